"""The request handlers as one object: `app.py` mounts each route's `operation` by name from it.

Each handler checks the token, validates input, checks permission, then acts. The handlers live with
their role (`download_handlers`, `upload_handlers`); what they share is in `handler_base`, input
parsing in `request_parsing`, and the response bodies and errors in `responses`.
"""

from __future__ import annotations

from files_service.download_handlers import DownloadHandlers
from files_service.upload_handlers import UploadHandlers


class FilesApi(DownloadHandlers, UploadHandlers):
    """Every route's handler, found by the `operation` name in `routes.ROUTES`."""
