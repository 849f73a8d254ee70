"""A web page and an HTTP API for a trained model (``cyclekit serve``).

:func:`~cyclekit.serve.app.create_app` builds the ASGI app; :mod:`~cyclekit.serve.limits` holds
the upload checks, :mod:`~cyclekit.serve.queue` the bounded work queue and
:mod:`~cyclekit.serve.models` the shared, lazily loaded models. FastAPI is imported only when an
app is created (``pip install 'cyclekit[serve]'``).
"""
from cyclekit.serve.app import BackgroundServer, create_app
from cyclekit.serve.limits import Limits

__all__ = ["BackgroundServer", "Limits", "create_app"]
