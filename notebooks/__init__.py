"""The seed's four notebooks (paired: `<name>.py` percent source, `<name>.ipynb`) and their headless runner."""
