"""The web app's routes, one router per role; :func:`rlhfkit.app.server.create_app` assembles them.

- :mod:`~rlhfkit.app.routes.pages`: the pages, their static files, the API docs and the health check;
- :mod:`~rlhfkit.app.routes.session`: sign in, sign out, who am I;
- :mod:`~rlhfkit.app.routes.annotate`: a person's queue, the run's settings for people, answers;
- :mod:`~rlhfkit.app.routes.media`: control segments as videos;
- :mod:`~rlhfkit.app.routes.admin`: progress, agreement, rounds, the report, pausing the loop.

Each handler is a module-level function that takes what it needs as
dependencies (:mod:`rlhfkit.app.deps`), so it can be imported and called alone.
"""
