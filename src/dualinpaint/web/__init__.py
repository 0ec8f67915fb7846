"""Web front-end: ``dualinpaint serve`` runs a FastAPI app (``app.create_app``) that serves a brush page
(``static/``) and a REST endpoint around ``dualinpaint.inference.Inpainter``.

FastAPI and uvicorn are optional (``pip install 'dualinpaint[web]'``); nothing here imports them until an
app is created.
"""
