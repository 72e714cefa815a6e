"""``dfdetect serve``: a REST API and a small web page around the shared face pipeline.

Needs the ``serve`` extra (fastapi, uvicorn, python-multipart). Nothing here imports typer.
"""
