"""The web app's routes, one module per role; :func:`rlhfkit.app.server.create_app` serves them.

- :mod:`~rlhfkit.app.routes.pages`: the pages, their static files, the API docs and the health check;
- :mod:`~rlhfkit.app.routes.session`: sign in, sign out, who am I;
- :mod:`~rlhfkit.app.routes.annotate`: a person's queue, the run's settings for people, answers;
- :mod:`~rlhfkit.app.routes.media`: control segments as videos;
- :mod:`~rlhfkit.app.routes.admin`: progress, agreement, rounds, the report, pausing the loop.

Each handler is a module-level function that takes what it needs as
dependencies (:mod:`rlhfkit.app.deps`) or parameters, so it can be imported and
called alone. Each module ends with ``add_routes(app)``, the table of its routes
(path, method, response model, documented refusals), which registers the
handlers on the app itself.

Why a table per module and not an ``APIRouter`` per module: since FastAPI 0.137,
``app.include_router`` keeps each included router as a node that every request
walks before it reaches its route. With the five routers included, an answer
cost 1,223 Python calls in the app instead of 675 (measured with cProfile), and
answers are what the app must do fast (docs/benchmarks.md, "Annotation app under
load"). Routes registered on the app are matched directly, as before.
"""
