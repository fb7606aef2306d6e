"""/v1/users: the caller's own account, and user administration."""

from __future__ import annotations

from app.auth import client_ip
from app.media import write_json
from app.operations import ADMIN, USER, operation
from app.personal_data import PersonalData
from app.schemas.accounts import UpdateMeIn, UpdateUserIn, UserOut, UserPage
from app.schemas.common import PageQuery
from app.schemas.personal_data import DeleteMeIn, ExportOut


class MeResource:
    __slots__ = ("_accounts", "_personal_data")

    def __init__(self, deps):
        self._accounts = deps.accounts
        self._personal_data = PersonalData(deps.pool, deps.passwords, deps.metrics)

    @operation(access=USER, summary="The caller's account", response=UserOut, tag="users")
    def on_get(self, req, resp):
        user = req.context.user
        write_json(resp, self._accounts.get(user, user.id))

    @operation(access=USER, summary="Change the caller's name or password",
               body=UpdateMeIn, response=UserOut, errors=(403,), tag="users")
    def on_patch(self, req, resp, body: UpdateMeIn):
        write_json(resp, self._accounts.update_me(req.context.user, body))

    @operation(access=USER, summary="Delete the caller's account (orders stay, without"
               " personal data; never the last admin)", body=DeleteMeIn, status=204,
               errors=(403, 409), tag="users")
    def on_delete(self, req, resp, body: DeleteMeIn):
        self._personal_data.delete(req.context.user.id, body.current_password, client_ip(req))


class ExportResource:
    __slots__ = ("_personal_data",)

    def __init__(self, deps):
        self._personal_data = PersonalData(deps.pool, deps.passwords, deps.metrics)

    @operation(access=USER, summary="Everything stored about the caller, as JSON",
               response=ExportOut, tag="users")
    def on_get(self, req, resp):
        write_json(resp, self._personal_data.export(req.context.user.id))


class UsersResource:
    __slots__ = ("_accounts",)

    def __init__(self, deps):
        self._accounts = deps.accounts

    @operation(access=ADMIN, summary="List users (oldest first)", query=PageQuery,
               response=UserPage, tag="users")
    def on_get(self, req, resp, query: PageQuery):
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
    def on_patch(self, req, resp, user_id, body: UpdateUserIn):
        write_json(resp, self._accounts.update(req.context.user, user_id, body))
