# file: examples/docs/websocket_port.py
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, Field

from tether import Forbidden, NotFound, Service, Tether, query


class Article(BaseModel):
    """An article as the store keeps it, internal fields included."""

    id: int
    title: str
    author: str
    body: str
    public: bool
    editor_notes: str


class ArticleOut(BaseModel):
    """What a reader receives: the output model is what `dehydrate` used to build."""

    title: str
    author: str
    body: str


class ArticleStore:
    """Stands in for a database session."""

    def __init__(self) -> None:
        self.rows = {
            1: Article(
                id=1, title="Hello", author="ada", body="...", public=True, editor_notes="-"
            ),
            2: Article(
                id=2, title="Draft", author="bob", body="...", public=False, editor_notes="!"
            ),
        }

    async def get(self, article_id: int) -> Article | None:
        return self.rows.get(article_id)


STORE = ArticleStore()


def get_store() -> ArticleStore:
    """`hydrate` becomes a dependency: whatever the handler needs is injected."""
    return STORE


def current_user(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any] | None:
    """The user, from the handshake's (or the message's) Authorization header."""
    return {"name": authorization} if authorization else None


api = Tether(prefix="/api", user=Depends(current_user))


class Articles(Service, name="articles"):
    store: ArticleStore = Depends(get_store)
    user: dict[str, Any] | None = Depends(current_user)

    @query
    async def get(self, article_id: Annotated[int, Field(gt=0)]) -> ArticleOut:
        """Route `articles/get`; `data_check` is the typed, constrained input."""
        article = await self.store.get(article_id)
        if article is None:
            raise NotFound(f"No article {article_id}", details={"article_id": article_id})
        # `access` that depends on the article itself: checked once it is loaded.
        if not article.public and self.user is None:
            raise Forbidden("Members only")
        return ArticleOut.model_validate(article, from_attributes=True)

    @query(auth=True)
    async def drafts(self) -> list[ArticleOut]:
        """`access` that depends only on the caller: the `auth=` policy."""
        rows = [a for a in self.store.rows.values() if not a.public]
        return [ArticleOut.model_validate(a, from_attributes=True) for a in rows]


api.include(Articles)
app = FastAPI()
api.mount(app)
