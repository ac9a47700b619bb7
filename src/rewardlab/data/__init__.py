"""Experience: the transition log that feedback segments are cut from."""
