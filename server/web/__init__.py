"""The office in a browser: staff pages, the merchant portal and the public pages.

Server-rendered HTML (Jinja2) on the same services as the JSON API; every page works
without JavaScript. One module per area under `pages/`, each a thin router: a handler
reads the form, calls one service function (which checks the permission and owns the
transaction) and renders a template. What every page shares lives here:

- `templating`: the Jinja2 environments (one per language), `render`, formatting;
- `security`: the headers of every page (a strict Content-Security-Policy), CSRF tokens;
- `auth`: who is logged in, the role a page needs (`OfficeUser`, `AdminUser`, ...);
- `errors`: a refusal as a page in the visitor's language;
- `notices`: what a page says after a form did its work (`?done=`, Post/Redirect/Get);
- `navigation`: the header's menu per role;
- `charts`, `statements`: bar charts as SVG geometry; a merchant's statement as a file.

Typed input (an amount with a decimal comma: `hcard.money.parse_amount`; a fee in percent,
a month) is read by the page that has the form, into the service's values or a message
next to the field.
"""
