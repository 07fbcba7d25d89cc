"""Reference implementations, kept apart from what training runs: the definitions that tests check the fast paths
against and that benchmarks time them against.

    propagation   BiRW unrolled (eq. 4-5), by a dense solve and as the official code computes it (eq. 6)
    summarizer    one EM-attention step with autograd (eq. 2-3)
    evaluation    average precision as the ActivityNet and grid evaluators define it (plain numpy)
    localization  proposal generation as the official codes write it (plain numpy)
"""
