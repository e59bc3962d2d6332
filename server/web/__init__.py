"""The office in a browser: staff pages, the merchant portal and the public pages.

Server-rendered HTML (Jinja2) on the same services as the JSON API; every page works
without JavaScript. One module per area under `pages/`, each a thin router: a handler
reads the form, calls one service function (which checks the permission and owns the
transaction) and renders a template. What every page shares lives here:

- `templating`: the Jinja2 environments (one per language), `render`, formatting;
- `security`: the headers of every page (a strict Content-Security-Policy), CSRF tokens;
- `auth`: who is logged in, the role a page needs (`OfficeUser`, `AdminUser`, ...);
- `forms`: reading typed input (amounts with a decimal comma, ids) into named refusals.
"""
