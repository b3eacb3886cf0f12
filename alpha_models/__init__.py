"""alpha-models: the shared data layer of the Alpha trading platform.

Importing the package imports every model, so ``Base.metadata`` (what Alembic compares
against) always holds the whole contract.
"""

from alpha_models import audit, trading
from alpha_models.base import Base

__all__ = ["Base", "audit", "trading"]
