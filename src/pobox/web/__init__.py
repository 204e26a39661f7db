"""The webmail: a Starlette application on the mail service, served by uvicorn inside
``pobox serve`` (docs/webmail.md)."""
