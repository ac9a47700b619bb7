"""Web app for people to label queries: two looped clips side by side, four buttons.

:func:`rewardlab.web.app.create_app` builds the FastAPI app of one run directory; see
:mod:`rewardlab.web.cli` for the ``rewardlab annotators add`` / ``rewardlab annotate`` commands.
This package never imports torch nor :mod:`rewardlab.algorithms`.
"""
