"""New hostile cases of the campaign's classes that its table does not list (issue 19, task 3)."""
from __future__ import annotations
