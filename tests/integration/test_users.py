"""User administration and object-level access."""

import uuid

import pytest

from tests.support.api import bearer, new_user, register


def test_user_sees_self_but_another_user_is_404(client):
    alice, bob = new_user(client), new_user(client)
    own = client.simulate_get(f"/v1/users/{alice['id']}", headers=alice["headers"])
    assert own.status_code == 200 and own.json["email"] == alice["email"]
    other = client.simulate_get(f"/v1/users/{bob['id']}", headers=alice["headers"])
    assert other.status_code == 404 and other.json["error"]["code"] == "not_found"


def test_admin_sees_anyone(client, db):
    admin, bob = new_user(client, "admin", db), new_user(client)
    result = client.simulate_get(f"/v1/users/{bob['id']}", headers=admin["headers"])
    assert result.status_code == 200 and result.json["id"] == bob["id"]
    assert "password_hash" not in result.text


@pytest.mark.parametrize("bad_id", ["nope", "1", str(uuid.uuid4()).upper(), "' OR 1=1 --",
                                    "0" * 8 + "-0000-0000-0000-" + "0" * 11 + "\n"])
def test_malformed_or_unknown_ids_are_404(client, db, bad_id):
    admin = new_user(client, "admin", db)
    result = client.simulate_get(f"/v1/users/{bad_id}", headers=admin["headers"])
    assert result.status_code == 404


def test_admin_lists_users_with_keyset_pagination(client, db):
    admin = new_user(client, "admin", db)
    for _ in range(4):
        register(client)
    seen, cursor = [], None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        result = client.simulate_get("/v1/users", query_string=query, headers=admin["headers"])
        assert result.status_code == 200
        assert len(result.json["items"]) <= 2
        seen += [item["id"] for item in result.json["items"]]
        cursor = result.json["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "cursor=%%%", "cursor=bm9wZQ",
                                   "unknown=1"])
def test_bad_list_queries_are_422(client, db, query):
    admin = new_user(client, "admin", db)
    result = client.simulate_get("/v1/users", query_string=query, headers=admin["headers"])
    assert result.status_code == 422, result.text
    assert result.json["error"]["code"] == "validation_failed"


def test_admin_changes_a_role_which_applies_at_next_login_and_is_audited(client, db):
    admin, carol = new_user(client, "admin", db), new_user(client)
    assert client.simulate_get("/v1/users", headers=carol["headers"]).status_code == 403
    promoted = client.simulate_patch(f"/v1/users/{carol['id']}", headers=admin["headers"],
                                     json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json["role"] == "admin"
    refreshed = client.simulate_post("/v1/auth/refresh",
                                     json={"refresh_token": carol["refresh_token"]}).json
    assert client.simulate_get("/v1/users",
                               headers=bearer(refreshed["access_token"])).status_code == 200
    with db.cursor() as cur:
        cur.execute("SELECT actor_id::text, subject_id::text, details FROM audit_log"
                    " WHERE action = 'user.role_changed'")
        assert cur.fetchall() == [(admin["id"], carol["id"], {"from": "user", "to": "admin"})]


def test_role_must_be_known(client, db):
    admin, dave = new_user(client, "admin", db), new_user(client)
    result = client.simulate_patch(f"/v1/users/{dave['id']}", headers=admin["headers"],
                                   json={"role": "root"})
    assert result.status_code == 422


def test_user_cannot_patch_users(client):
    eve = new_user(client)
    result = client.simulate_patch(f"/v1/users/{eve['id']}", headers=eve["headers"],
                                   json={"role": "admin"})
    assert result.status_code == 403


def test_ids_in_upper_or_mixed_case_are_the_same_id(client, db):
    admin, bob = new_user(client, "admin", db), new_user(client)
    for spelling in (bob["id"].upper(), bob["id"][:9].upper() + bob["id"][9:]):
        result = client.simulate_get(f"/v1/users/{spelling}", headers=admin["headers"])
        assert result.status_code == 200 and result.json["id"] == bob["id"]
    # A user's own id in capitals is still "self", never another user's.
    own = client.simulate_get(f"/v1/users/{bob['id'].upper()}", headers=bob["headers"])
    assert own.status_code == 200 and own.json["id"] == bob["id"]
    # ...and an admin's own id in capitals is still its own role.
    self_demote = client.simulate_patch(f"/v1/users/{admin['id'].upper()}",
                                        json={"role": "user"}, headers=admin["headers"])
    assert self_demote.status_code == 403
