"""The studio (issue 13): five sliders, the face follows live, in a local page.

``params`` (what one view is), ``render`` (models of a root and what a view renders), ``gate``
(one render at a time, newest view wins), ``pngmeta`` (saved faces carry their recipe), ``app``
(routes as plain functions), ``server`` (the HTTP side on the shared local-server mechanics).
"""
