"""Celery's settings (`app.config_from_object('celeryconfig')`).

Derived from `orders.settings`, the only reader of the environment, by
`orders.config.celery_settings`; see that function for each value and why.
"""

from orders.config import celery_settings
from orders.settings import get_settings

globals().update(celery_settings(get_settings()))
