"""The studio (issues 13 and 22): five sliders, the face follows live, in a local page.

``params`` (what one view is), ``render`` (models of a root and the wp of each face), ``frames``
(exact and 64 px preview frames of single faces, cached by content), ``gate`` (one render at a time,
newest view wins; pinned worker threads, Measure and exports beside rendering), ``pngmeta`` (saved
faces and sheets carry their recipes), ``exports`` (sweeps and expression sheets), ``landmarks``
(Measure's landmark judge and the identity distance), ``app`` (routes as plain functions),
``server`` (the HTTP side on the shared local-server mechanics).
"""
