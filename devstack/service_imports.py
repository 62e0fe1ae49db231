"""Lets a devstack command started on its own (`python -m devstack.apigw`, `python -m
devstack.sqs_poller`) import the service code it runs in process, as the local backend's processes
can: they are started with the development import path (components/app_code.py)."""

from __future__ import annotations

import sys

from components.app_code import SOURCE_ROOTS


def import_services() -> None:
    for root in SOURCE_ROOTS:
        if str(root) not in sys.path:
            sys.path.append(str(root))
