# file: examples/docs/dependencies_3.py
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from tether import Tether

oauth2 = OAuth2PasswordBearer(tokenUrl="token", scopes={"notes:read": "Read notes"})
TOKENS = {"t-read": {"notes:read"}, "t-none": set()}


async def scoped_token(scopes: SecurityScopes, token: Annotated[str, Depends(oauth2)]) -> str:
    """Check that the bearer token grants every scope the operation asks for."""
    granted = TOKENS.get(token)
    if granted is None:
        raise HTTPException(status_code=401, detail="Unknown token")
    missing = set(scopes.scopes) - granted
    if missing:
        raise HTTPException(status_code=403, detail=f"Missing scopes: {sorted(missing)}")
    return token


api = Tether(prefix="/api")


@api.query
async def read_notes(
    token: Annotated[str, Security(scoped_token, scopes=["notes:read"])],
) -> list[str]:
    """Needs the `notes:read` scope; OpenAPI shows the OAuth2 scheme."""
    return ["a note"]


app = FastAPI()
api.mount(app)
