"""Web pages: consumer H5 (``/``), merchant console (``/console``), operator admin (``/admin``).

Server-rendered with Jinja2 (+ htmx where it helps), in Simplified Chinese, calling the same
services as the API (``o2o.<domain>.service``), never the API over HTTP.

How to add a page
-----------------
1. A module ``o2o/web/pages/<area>_<topic>.py`` with ``router = page_router()``; it is found
   automatically (``o2o.web.api``). Register nav links there: ``add_nav(NavItem("console",
   "商品", "/console/m/{merchant_id}/listings", order=20, roles=MANAGERS))``.
2. Route functions take one of the context dependencies from ``o2o.web.context``:
   ``PageDep`` (anyone), ``SignedInPageDep`` (redirects to /login), ``AdminPageDep`` (operators,
   403 otherwise), ``ConsolePageDep`` (staff of ``{merchant_id}`` in the path; ``page.merchant``,
   ``page.role``). Further rules: ``page.actor.require_staff(...)`` exactly as the API does.
3. Read with ``with page.read() as session:``; write with ``Form.submit`` or ``page.write()``;
   answer with ``page.render("area/x.html", **ctx)`` or ``page.redirect(url, flash="…")``.
4. Forms: ``Form.parse(Model, data)`` with ``data: FormDataDep`` (o2o.web.forms); render fields
   with the macros in templates/_macros.html (label, value, Chinese error next to the field);
   ``{{ csrf_input() }}`` in every ``<form method="post">`` — the router refuses POSTs without it.
5. Templates extend ``consumer/_layout.html``, ``console/_layout.html`` or ``admin/_layout.html``
   and fill ``{% block title %}`` and ``{% block content %}``; page sections others fill use
   slots (``o2o.web.nav.provide``: ``consumer.home``, ``consumer.me``, ``console.dashboard``).
6. Errors: raise the services' AppErrors; on page paths they render templates/error.html in
   Chinese (o2o.web.errors); 401 becomes a redirect to the login page.
"""
