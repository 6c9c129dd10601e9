"""The annotation web app: people answer the loop's pending queries in a browser.

``rlhfkit serve RUN_DIR`` starts it (:mod:`rlhfkit.app.server`); tokens come from
``rlhfkit annotators add NAME`` (:mod:`rlhfkit.app.auth`); scripts and tests
talk to it with :class:`rlhfkit.app.client.AnnotationClient`.
"""
