"""The RSKP method, one module per part, composed by ``wrapper.RSKPWrapper``:

- ``summarizer``: EM attention, the representative snippets mu^a (paper 3.1, eq. 2-3);
- ``representatives``: the ``Representatives`` component, EM by default and the ablations' other ways behind the
  same call (Tables 3-4, supplement Table 2);
- ``memory``: the per-class memory bank of representative snippets (3.2);
- ``propagation`` and ``birw_kernels``: the bipartite random walk, eq. 4-6 in closed form (3.3);
- ``walks``: the ``Walk`` component, BiRW by default and the ablations' walks behind the same call (Table 5,
  Fig. 5, supplement Table 3); ``registry`` the names it takes, with ``register_walk`` for a new one;
- ``teacher``: the pseudo-labels T^f the main branch distils (eq. 7), built in one place;
- ``losses``: the loss terms (eq. 7-8);
- ``branches``: test-time fusion, the branches' own parameter copies, the separate random stream;
- ``model``: the model interface shared with the head alone (``HeadOnlyModel``) and what both return;
- ``branch_outputs``: every branch and the teacher of one inference pass, for diagnostics.

Nothing is imported here: ``rskp_plugin.config`` reads ``registry`` without loading the method.
"""
