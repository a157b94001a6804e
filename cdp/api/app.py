"""The FastAPI application factory. Routers live in sibling modules and are included here."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from cdp import __version__
from cdp.api.audit import router as audit_router
from cdp.api.consent import router as consent_router
from cdp.api.destinations import router as destinations_router
from cdp.api.errors import install_error_handlers
from cdp.api.exports import router as exports_router
from cdp.api.heap import lifespan
from cdp.api.metrics import router as metrics_router
from cdp.api.middleware import RequestContextMiddleware
from cdp.api.openapi import install_openapi
from cdp.api.ops import router as ops_router
from cdp.api.principals import router as principals_router
from cdp.api.privacy import router as privacy_router
from cdp.api.profiles import router as profiles_router
from cdp.api.segment import router as segment_router
from cdp.api.segment_cors import SegmentCorsMiddleware
from cdp.api.segments import router as segments_router
from cdp.api.traits import router as traits_router
from cdp.logging import configure_logging


def create_app() -> FastAPI:
    """Build the app (settings and storage are reached lazily, on the first request).

    Logging is configured here when nothing configured it yet: ``cdp serve --workers N`` starts
    each worker in a fresh process that imports this factory, and structlog's defaults there
    would render tracebacks with their local variables and without the PII redaction."""
    if not structlog.is_configured():
        configure_logging()
    app = FastAPI(
        title="cdp",
        version=__version__,
        description="Privacy-compliant customer data platform: permissioned, audited API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(RequestContextMiddleware)  # request id, limits, log
    # outermost: every answer of an ingestion route, a limit's 429 or 504 too, is readable by
    # the shop's pages (a preflight is answered here, before the limits and the log line)
    app.add_middleware(SegmentCorsMiddleware)
    app.include_router(ops_router)
    app.include_router(profiles_router)
    app.include_router(segment_router)
    app.include_router(principals_router)
    app.include_router(audit_router)
    app.include_router(exports_router)
    app.include_router(destinations_router)
    app.include_router(traits_router)
    app.include_router(segments_router)
    app.include_router(metrics_router)
    app.include_router(consent_router)
    app.include_router(privacy_router)
    return app
