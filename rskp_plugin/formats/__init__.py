"""File formats: each format rskp reads is read by exactly one function here, used by ``data`` and ``evaluation``.

=====================  ==========================================  ==========================================
format                 reader                                      used by
=====================  ==========================================  ==========================================
``.npy`` (any)         ``npy.load_npy`` (``npy.npy_header``)       every reader below, ``rskp predict``
W-TALC annotations     ``wtalc.read_wtalc_files``                  ``data.load_wtalc``, ``evaluation
                                                                   .load_wtalc_ground_truth``, ``rskp predict``
``Ambiguous_test.txt`` ``ambiguous.read_ambiguous``                ``data.load_wtalc``, ``evaluation``
ActivityNet JSON       ``activitynet.read_activitynet_json``       ``data.load_folders``, ``evaluation`` (ground
                                                                   truth and predictions), ``rskp evaluate``
=====================  ==========================================  ==========================================

A reader turns a file into plain Python/numpy objects and refuses a malformed file with a ``DataError`` naming it;
what the contents mean (validating videos, flattening for scoring) is left to its users. Nothing here imports
torch or model code.
"""
