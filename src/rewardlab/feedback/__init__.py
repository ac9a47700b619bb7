"""Preference feedback: scripted (simulated) teachers and query selection.

``rewardlab.feedback.teachers`` holds the B-Pref scripted teachers (Lee et al. 2021, Sec. 3.2).
Submodules are imported explicitly; importing this package has no side effects.
"""
