"""``create_app``: the one place the application is assembled."""

from __future__ import annotations

import falcon

from app import cors, errors, logs, memory, near_listener, nearcache, openapi, replicas
from app import metrics as metrics_module
from app.auth import AccessControl
from app.cache import Cache
from app.cache_epochs import Epochs
from app.config import Config
from app.db import Pool
from app.deps import Dependencies
from app.etags import etag_of
from app.ids import CanonicalIds
from app.middleware import RequestContext
from app.operations import operation_of, responder_for, responders
from app.replay import Replay
from app.resources.docs import OpenAPIResource
from app.routes import ROUTES


class App(falcon.App):
    """A falcon App that holds its worker's dependencies (closed on exit).

    With a near cache, repeats of replayable reads are answered by
    ``replay`` (app/replay.py) before falcon sees them.
    """

    __slots__ = ("deps", "replay")
    deps: Dependencies
    replay: Replay | None

    def __call__(self, env, start_response):
        replay = self.replay
        if replay is None:
            return super().__call__(env, start_response)
        return replay(env, start_response, super().__call__)


class Router(falcon.routing.CompiledRouter):
    """falcon's router, with HEAD answered by ``on_get`` where a resource has no ``on_head``."""

    def map_http_methods(self, resource, **kwargs):
        methods = super().map_http_methods(resource, **kwargs)
        if "GET" in methods and getattr(resource, "on_head", None) is None:
            methods["HEAD"] = responder_for(resource, "HEAD")
        return methods


def create_app(
    config: Config | None = None,
    *,
    pool: Pool | None = None,
    cache: Cache | None = None,
    metrics: metrics_module.Metrics | None = None,
    configure_logging: bool = True,
) -> App:
    """Build the WSGI application and its collaborators.

    Called once per worker process (never in the gunicorn master), so every
    socket it opens belongs to the worker that uses it.
    """
    config = config or Config.from_env()
    memory.release_large_blocks()  # password hashes must not stay resident (app/memory.py)
    if configure_logging:
        logs.configure(config.log_level)
    metrics = metrics or metrics_module.create(config.statsd_addr)
    pool = pool or Pool(
        config.database_url,
        size=config.db_pool_size,
        timeout=config.db_pool_timeout,
        metrics=metrics,
    )
    cache = cache or Cache(
        config.memcached_servers,
        max_pool_size=max(config.worker_connections, 16),
        metrics=metrics,
        epochs=Epochs(pool, interval=config.cache_epoch_poll, metrics=metrics),
    )
    deps = Dependencies(config, pool, cache, metrics)
    if config.database_replica_urls:
        # Cache misses, lists and search may then read from a replica that has
        # replayed every catalog write (app/replicas.py); the rest stays on the primary.
        deps.catalog.use_replicas(replicas.from_config(config, pool, cache, metrics))
    if config.near_cache_ttl > 0 and (nearcache.shared() or config.workers == 1):
        # Shared with the sibling workers (forked from a master that imported
        # app.nearcache, see gunicorn.conf.py), or there are none.
        near = nearcache.NearCache(config.near_cache_ttl, tag=cache.tag,
                                   listened_ttl=config.near_cache_listened_ttl)
        deps.catalog.use_near_cache(near)
        if config.near_cache_listened_ttl > 0:
            deps.near_listener = near_listener.Listener(near, pool, metrics=metrics)
    # Whether or not this node keeps near entries or listens, other nodes may: a node
    # with the listened ttl at 0 announces too, so a rollout can turn listening on
    # once every node runs a release that announces (app/near_listener.py).
    slots = deps.catalog.near.slots if deps.catalog.near is not None else nearcache.TABLE
    deps.near_announcer = near_listener.Announcer(
        pool, slots.node, metrics=metrics,
        # Not announced in time: retire the keys' memcached epochs instead.
        lost=lambda keys: cache.invalidate((), lost=keys, wait=False))
    deps.catalog.announce_invalidations(deps.near_announcer)

    context = RequestContext(metrics)
    access = AccessControl(config.jwt_secret, deps.limiter, config.rate_limit_per_minute,
                           metrics, deps.accounts.current_role)
    # CORS first, so its headers go on every answer, errors included (nothing when off).
    app = App(middleware=[*cors.middleware(config.cors_origins), context,
                          CanonicalIds(), access], router=Router())
    app.resp_options.xml_error_serialization = False
    errors.register(app)

    for route in ROUTES:
        _check_declared(route.template, route.resource)
    document = openapi.build(ROUTES)
    for route in ROUTES:
        if route.resource is OpenAPIResource:
            resource = OpenAPIResource(deps, document)
        else:
            resource = route.resource(deps)
        app.add_route(route.template, resource)
    app.deps = deps  # for gunicorn's worker_exit hook and the tests
    app.replay = None
    if deps.catalog.near is not None:
        app.replay = Replay(
            deps.catalog.reads, context, metrics, _replayable(ROUTES, config),
            etag=etag_of, cors=bool(config.cors_origins))
    if deps.near_listener is not None:
        deps.near_listener.start()  # last: an app that failed to build leaves nothing running
    return app


def _replayable(routes, config: Config) -> list[str]:
    """Templates whose GET may be replayed: declared so, and not under the general limit."""
    found = []
    for route in routes:
        op = operation_of(route.resource, "GET")
        if op is not None and op.replayable and not (
                op.rate_limited and config.rate_limit_per_minute > 0):
            found.append(route.template)
    return found


def _check_declared(template: str, resource) -> None:
    """Refuse to start if a responder does not say who may call it."""
    for method in responders(resource):
        if operation_of(resource, method) is None:
            raise RuntimeError(f"{method} {template} has no @operation declaration")
