"""The results store (SQLAlchemy models, Alembic migrations, the Store that others write through).

Importing this package needs SQLAlchemy and Alembic (`pip install malhug[service]`).
"""
from .store import Store, StoreError, StoreUnavailable

__all__ = ["Store", "StoreError", "StoreUnavailable"]
