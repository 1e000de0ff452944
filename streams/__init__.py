"""The two Faust apps, on the core library (:mod:`inferloop`):

* :mod:`streams.worker`: image events in, predictions and dead letters out (``inferloop worker``);
* :mod:`streams.joiner`: feedback joined with predictions and images, labelled examples out (``inferloop joiner``).

:mod:`streams.faust_app` configures Faust once for both. Neither app imports the other.
"""
