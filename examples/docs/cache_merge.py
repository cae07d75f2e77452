# file: examples/docs/cache_merge.py
from fastapi import FastAPI
from pydantic import BaseModel

from tether import Tether


class Person(BaseModel):
    name: str
    email: str


class Account(BaseModel):
    account_id: int
    owner: Person
    billing: Person


ADA = Person(name="ada", email="ada@example.com")
ACCOUNTS = {7: Account(account_id=7, owner=ADA, billing=ADA)}  # stands in for a database

api = Tether(prefix="/api")


@api.query(context="account")
async def owner(account_id: int) -> Person:
    return ACCOUNTS[account_id].owner


@api.query(context="account")
async def billing_contact(account_id: int) -> Person:
    return ACCOUNTS[account_id].billing


# Two slots of "account" return a Person: merge=["account"] would be ambiguous, so the
# slot is named. The answer (and every subscriber of account 7) gets the new value itself.
@api.command(merge={"account": "billing_contact"})
async def set_billing_contact(account_id: int, name: str, email: str) -> Person:
    ACCOUNTS[account_id].billing = Person(name=name, email=email)
    return ACCOUNTS[account_id].billing


app = FastAPI()
api.mount(app)
