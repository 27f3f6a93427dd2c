"""The integration layer: runs the numbered steps in order and holds the no-download demo profile.

The only package that imports the others (the step scripts it calls do the same).
"""
