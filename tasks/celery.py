"""What `celery -A tasks worker|beat|flower` loads: the app built from the environment.

Celery finds this module by itself (`-A tasks` looks for `tasks.celery`), as a WSGI server finds a
`create_app()`; nothing else imports it.
"""

from tasks.celery_app import create_celery_app
from tasks.config import load_settings

app = create_celery_app(load_settings())
