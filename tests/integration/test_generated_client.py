"""A client generated from /openapi.json runs the auth -> order flow.

openapi-python-client (requirements-dev.txt) writes a package from the
served document; the test imports it and drives a live gunicorn server with
it. A document a generator cannot use, or one whose types disagree with
what the server sends (ids, timestamps, headers, statuses), fails here.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid

import pytest

from tests.support.api import PASSWORD, unique_email
from tests.support.http import request

PACKAGE = "peregrine_client"
# No formatting hooks (the default runs ruff): the generated code is only imported.
CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"


@pytest.fixture
def generated(live_server, tmp_path):
    """The generated package, imported from tmp_path."""
    document = request(f"{live_server.url}/openapi.json")
    assert document.status == 200
    (tmp_path / "openapi.json").write_bytes(document.body)
    (tmp_path / "config.yaml").write_text(CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate",
         "--path", str(tmp_path / "openapi.json"), "--config", str(tmp_path / "config.yaml"),
         "--meta", "none", "--output-path", str(tmp_path / PACKAGE)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"openapi-python-client failed:\n{output}"
    # It exits 0 even when it leaves endpoints or models out: those are warnings.
    assert "Warning" not in output, f"openapi-python-client left parts out:\n{output}"
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.partition(".")[0] == PACKAGE]:
            del sys.modules[name]


def api(name: str):
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def models():
    return importlib.import_module(f"{PACKAGE}.models")


def register_and_login(client, email: str):
    m = models()
    created = api("auth.post_v1_auth_register").sync_detailed(
        client=client, body=m.RegisterIn(email=email, password=PASSWORD, name="Client User"))
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed.id, uuid.UUID)
    assert created.headers["Location"] == f"/v1/users/{created.parsed.id}"
    tokens = api("auth.post_v1_auth_login").sync(
        client=client, body=m.LoginIn(email=email, password=PASSWORD))
    assert isinstance(tokens, m.TokenPairOut), tokens
    return created.parsed, tokens


def test_generated_client_runs_the_auth_to_order_flow(generated, live_server, db):
    m = models()
    anonymous = generated.Client(base_url=live_server.url, raise_on_unexpected_status=True)

    # An admin stocks the catalog (made admin in the database, as an operator would).
    admin_user, admin_tokens = register_and_login(anonymous, unique_email("admin"))
    with db.cursor() as cur:
        cur.execute("UPDATE users SET role = 'admin' WHERE id = %s", (str(admin_user.id),))
    admin_tokens = api("auth.post_v1_auth_login").sync(
        client=anonymous, body=m.LoginIn(email=admin_user.email, password=PASSWORD))
    admin = generated.AuthenticatedClient(base_url=live_server.url,
                                          token=admin_tokens.access_token,
                                          raise_on_unexpected_status=True)
    sku = f"GEN-{uuid.uuid4().hex[:8]}"
    created = api("catalog.post_v1_products").sync_detailed(
        client=admin, body=m.ProductIn(sku=sku, name="Generated Hammer", price="12.50", stock=5))
    assert created.status_code == 201, created.content
    assert created.headers["Location"] == f"/v1/products/{created.parsed.id}"

    # A shopper: register, log in, find the product, order it, read the order back.
    user, tokens = register_and_login(anonymous, unique_email("shopper"))
    shopper = generated.AuthenticatedClient(base_url=live_server.url, token=tokens.access_token,
                                            raise_on_unexpected_status=True)
    me = api("users.get_v1_users_me").sync(client=shopper)
    assert me.id == user.id and me.email == user.email

    listed = api("catalog.get_v1_products").sync_detailed(client=anonymous, q="Generated")
    assert listed.status_code == 200
    product = next(item for item in listed.parsed.items if item.sku == sku)
    assert product.stock == 5 and product.price == "12.50"
    # The documented conditional read: the ETag brings a 304.
    again = api("catalog.get_v1_products").sync_detailed(
        client=anonymous, q="Generated", if_none_match=listed.headers["ETag"])
    assert again.status_code == 304 and again.content == b""

    order_in = m.OrderIn(
        items=[m.OrderItemIn(product_id=product.id, quantity=2)],
        shipping_address=m.Address(line1="1 Test Street", city="Testville",
                                   postal_code="12345", country="DE"),
    )
    key = str(uuid.uuid4())
    placed = api("orders.post_v1_orders").sync_detailed(client=shopper, body=order_in,
                                                         idempotency_key=key)
    assert placed.status_code == 201, placed.content
    order = placed.parsed
    assert order.user_id == user.id and order.total == "25.00"
    assert [(line.product_id, line.quantity) for line in order.items] == [(product.id, 2)]
    # A retry with the same Idempotency-Key replays the order instead of placing another.
    replayed = api("orders.post_v1_orders").sync(client=shopper, body=order_in,
                                                 idempotency_key=key)
    assert replayed.id == order.id

    read_back = api("orders.get_v1_orders_order_id").sync(order.id, client=shopper)
    assert read_back.to_dict() == order.to_dict()
    mine = api("orders.get_v1_orders").sync(client=shopper)
    assert [item.id for item in mine.items] == [order.id]

    # The documented 401: no token, and the error envelope parses.
    refused = api("users.get_v1_users_me").sync_detailed(client=anonymous)
    assert refused.status_code == 401
    assert refused.parsed.error.code == "unauthorized"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")

