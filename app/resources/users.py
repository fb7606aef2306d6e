"""/v1/users: the caller's own account, and user administration."""

from __future__ import annotations

from app.media import read_json, read_query, write_json
from app.operations import ADMIN, USER, operation
from app.schemas.auth import PageQuery, UpdateMeIn, UpdateUserIn, UserOut, UserPage


class MeResource:
    __slots__ = ("_accounts",)

    def __init__(self, deps):
        self._accounts = deps.accounts

    @operation(access=USER, summary="The caller's account", response=UserOut, tag="users")
    def on_get(self, req, resp):
        user = req.context.user
        write_json(resp, self._accounts.get(user, user.id))

    @operation(access=USER, summary="Change the caller's name or password",
               body=UpdateMeIn, response=UserOut, errors=(403,), tag="users")
    def on_patch(self, req, resp):
        write_json(resp, self._accounts.update_me(req.context.user, read_json(req, UpdateMeIn)))


class UsersResource:
    __slots__ = ("_accounts",)

    def __init__(self, deps):
        self._accounts = deps.accounts

    @operation(access=ADMIN, summary="List users (oldest first)", query=PageQuery,
               response=UserPage, tag="users")
    def on_get(self, req, resp):
        query = read_query(req, PageQuery)
        write_json(resp, self._accounts.list(query.limit, query.cursor))


class UserResource:
    __slots__ = ("_accounts",)

    def __init__(self, deps):
        self._accounts = deps.accounts

    @operation(access=USER, summary="A user (admins: anyone; users: themselves)",
               response=UserOut, errors=(404,), tag="users")
    def on_get(self, req, resp, user_id):
        write_json(resp, self._accounts.get(req.context.user, user_id))

    @operation(access=ADMIN, summary="Change a user's role or name (not one's own role;"
               " never the last admin's)", body=UpdateUserIn, response=UserOut,
               errors=(403, 404, 409), tag="users")
    def on_patch(self, req, resp, user_id):
        body = read_json(req, UpdateUserIn)
        write_json(resp, self._accounts.update(req.context.user, user_id, body))
