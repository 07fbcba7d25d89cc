"""RSKPWrapper: adds representative snippet summarisation, the memory bank, BiRW propagation and pseudo-label
distillation to any head that follows the ``Head`` protocol (paper section 3, official training recipe).

    X (B, T, D) -> F = head.embed(X)          (B, T, d)
    main  = head(F)                            HeadOutput
    mu_a  = summarizer(F)                      (B, n, d)      eq. 2-3 (rskp.summarizer.method/region: representatives)
    intra = head(birw(F, mu_a))                               eq. 6
    inter = head(birw(F, memory[labels]))      after the memory is filled (warm-up)
    (a head with ``forward_branches`` computes the three at once from the factored walks, same numbers)
    loss  = L_cls(main, intra, 0.5 inter) + alpha L_kd(main.tcam, fused teacher) + beta L_att(main) + head aux

``rskp.propagation`` swaps the walk (random walk, unrolled eq. 4-5, propagated scores) or fuses the intra and inter
representatives into one walk (``walks``); ``rskp.losses.feature_loss`` adds ||F - F^a||.
``rskp.propagation.branch_parameters`` (or the head's ``branch_parameters``) gives the intra and inter branches their
own copies of named head parameters (FAC-Net's attention centre, STPN's attention module), trained by their losses
alone; ``rskp.losses.rampup_epochs`` ramps RSKP's terms up over the warm-up by default.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from ..config import RSKPConfig
from ..protocols import Head, HeadOutput, Propagated
from .branch_outputs import branch_outputs
from .branches import ForwardBranches, branch_parameter_names, fuse_outputs, separate_random_stream
from .losses import TermInputs, feature_distance, loss_weights, rampup_weight, registered_terms
from .memory import MemoryBank
from .model import Branches, HeadOnlyModel, RSKPOutput, check_head, head_losses, predict, validate_inputs
from .representatives import Representatives, Selection
from .summarizer import EMSummarizer
from .teacher import Teacher
from .walks import Walk

__all__ = ["Branches", "HeadOnlyModel", "RSKPOutput", "RSKPWrapper"]


class RSKPWrapper(nn.Module):
    """Wraps a head with RSKP. ``RSKPWrapper(MyHead())`` is all a head needs.

    Training follows the official code: the inter-video branch and its memory are off during warm-up; at the end
    of warm-up the caller runs ``initialize_memory`` (one no-grad pass over the training set), after which the
    inter branch joins, the distillation weight drops to ``config.losses.distillation_after_warmup`` and every
    training forward offers its representative snippets to the memory bank.

    Args:
        head: any object following the ``Head`` protocol (an ``nn.Module`` with ``num_classes``, ``embed_dim``).
        config: hyper-parameters; defaults reproduce the official code.
    """

    def __init__(self, head: Head, config: RSKPConfig | None = None) -> None:
        super().__init__()
        config = RSKPConfig() if config is None else config
        self.traits = check_head(head)  # the head's optional parts, resolved once
        self.head = head
        self.config = config
        # the method's parts, each built once from its section of the config
        s, p = config.summarizer, config.propagation
        with separate_random_stream(torch.device("cpu")):  # the head's random stream is the same as alone
            self.summarizer = EMSummarizer(
                head.embed_dim, s.num_representatives, s.em_iters, s.temperature, init=s.init
            )
        self.representatives = Representatives(self.summarizer, s.method, s.region, s.num_representatives,
                                               s.temperature)
        self.walk = Walk(p.method, p.weight, p.temperature, p.steps, p.inter_fusion)
        self.teacher = Teacher(config.teacher.source, config.teacher.weighting, config.teacher.distill,
                               config.fusion.pseudo_label_intra, config.fusion.test_main,
                               config.losses.distillation_temperature)
        self.memory = MemoryBank(head.num_classes, config.memory.slots, head.embed_dim)
        self.memory_enabled, self.warmup_epochs = config.memory.enabled, config.memory.warmup_epochs
        self.weights = loss_weights(config.losses)  # eq. 8's weights and the registered terms, as plain values
        # test-time fusion (``rskp.fusion``): main alone, or main fused with intra at weight ``test_main``
        self.use_intra_at_test, self.test_main = config.fusion.use_intra_at_test, config.fusion.test_main
        self.head_gradient, self.factored_branches = p.head_gradient, config.factored_branches
        # the propagated branches' own copies of some head parameters (``rskp.propagation.branch_parameters``)
        self.branch_names = branch_parameter_names(head, p.branch_parameters)
        params = dict(head.named_parameters())
        self.branch_weights = nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self.branch_names])
        self.rampup = 1.0  # weight of RSKP's own loss terms in this epoch (``start_epoch``)
        self._scheduled = False  # whether a loop called ``start_epoch``: a loop that never does is warned once

    def start_epoch(self, epoch: int, memory_batches: Any = None) -> None:
        """The one call a training loop makes before each epoch ``epoch`` (0-based): RSKP's schedule.

        RSKP's own loss terms get the ramp-up weight ``losses.rampup_weight(epoch, E)`` (E =
        ``losses.rampup_epochs``, or the memory bank's warm-up where that is None). Once the warm-up is over
        (``epoch > memory.warmup_epochs``) and the memory bank is still empty, it is filled from
        ``memory_batches``: (features (B, T, D), mask (B, T) or None, labels (B, C)) over the training videos in a
        fixed order, or a callable returning them (called only then), as ``initialize_memory`` takes them. A loop
        written by hand and ``Trainer.fit`` then train the same model (``Trainer`` fills the bank at the end of
        the last warm-up epoch, which is the same point between two epochs).

        Raises:
            ValueError: the bank is due and ``memory_batches`` is None.
        """
        self.rampup = rampup_weight(epoch, self.rampup_epochs)
        self._scheduled = True
        if not self.memory_fill_due(epoch):
            return
        if memory_batches is None:
            raise ValueError(
                f"epoch {epoch} comes after the memory bank's warm-up (rskp.memory.warmup_epochs = "
                f"{self.warmup_epochs}): pass start_epoch(epoch, memory_batches=...), the training "
                "videos as (features, mask, labels) batches in a fixed order, or set rskp.memory.enabled=false")
        self.initialize_memory(memory_batches() if callable(memory_batches) else memory_batches)

    def _warn_unscheduled(self) -> None:
        self._scheduled = True  # once
        if self.rampup_epochs > 0 or self.memory_enabled:
            warnings.warn(
                "RSKPWrapper is training without start_epoch(): call model.start_epoch(epoch, memory_batches) "
                "before each epoch, or RSKP's terms run at full weight from the first step (no ramp-up) and the "
                "memory bank never fills (README, 'Your own training loop')", UserWarning, stacklevel=5)

    def memory_fill_due(self, epochs_done: int) -> bool:
        """Whether the memory bank must be filled before training goes on, ``epochs_done`` epochs into a run: the
        bank is enabled, still empty, and the warm-up (epoch indices 0 .. ``memory.warmup_epochs``) is over."""
        return self.memory_enabled and not bool(self.memory.ready) and epochs_done >= self.warmup_epochs + 1

    @property
    def rampup_epochs(self) -> int:
        """E of the ramp-up: ``losses.rampup_epochs``, else ``memory.warmup_epochs`` (0: no ramp-up)."""
        configured = self.weights.rampup_epochs
        return self.warmup_epochs if configured is None else configured

    @property
    def memory_ready(self) -> bool:
        """True once the warm-up pass filled the memory bank (then the inter-video branch runs in training)."""
        return self.memory_enabled and bool(self.memory.ready)

    def representative_scores(self, reps: Tensor) -> Tensor:
        """Class probabilities of representative snippets (B, n, d) -> (B, n, C), used to rank memory entries."""
        if self.traits.representative_scores:
            return self.head.representative_scores(reps)  # type: ignore[attr-defined]
        return torch.softmax(self.head.classify(reps), dim=-1)[..., : self.head.num_classes]

    def embed(self, features: Tensor, mask: Tensor) -> Tensor:
        """The head's embedding F (B, T, d), made contiguous: a head may return it in another memory order (a
        convolution's (B, d, T) transposed), on which the summariser's and the walks' skinny (T, d) x (d, n)
        products run several times slower; one copy costs less than all of them (a no-op when contiguous)."""
        return self.head.embed(features, mask).contiguous()

    def select_representatives(self, feats: Tensor, mask: Tensor, *, bank: bool = False
                               ) -> tuple[Selection, HeadOutput | None]:
        """The representatives (``Representatives.select``) of F (B, T, d), with the main branch's output where
        they need its scores (it is then run first, once), else None."""
        main = self.head(feats, mask) if self.representatives.needs_scores else None
        return self.representatives.select(feats, mask, main, bank=bank), main

    def _offer(self, sel: Selection) -> tuple[Tensor, Tensor]:
        """What ``sel`` offers the memory bank: (reps (B, n, d), class probabilities (B, n, C), -inf on missing
        representatives so that the bank never keeps them)."""
        reps = sel.bank.detach()  # type: ignore[union-attr]
        with torch.no_grad():
            scores = self.representative_scores(reps)
            if sel.bank_mask is not None:
                scores = scores.masked_fill(~sel.bank_mask[..., None], float("-inf"))
        return reps, scores

    def run_branches(self, feats: Tensor, mask: Tensor, walks: list[tuple[Tensor, Tensor | None]],
                     sel: Selection | None = None, main: HeadOutput | None = None
                     ) -> tuple[list[HeadOutput], list[Propagated]]:
        """The head on F and on the walk's output for each (reps (B, n, d), reps_mask) of ``walks``: ([main, ...],
        the walked features, factored).

        The walks run together (``Walk.features``: ``birw_walks`` by default, ``rskp.propagation.method``
        otherwise; one pass over F for all of them). A head with ``forward_branches`` receives them factored
        (``Propagated``) and shares its products over F between the branches; any other head runs on each F* in
        turn. Both give the same numbers. ``method: scores`` walks the class logits instead (``score_branches``) and returns no walked features.
        ``sel`` (a ``Selection`` under ``rskp.summarizer.region``): the walks run over ``sel.features`` and come
        back as walks of F; ``main``: the main branch's output where it ran already (its scores chose the
        representatives), the others then run on the dense walks.
        """
        source = feats if sel is None else sel.features
        if not self.walk.walks_features:
            return self.walk.scores(self.head, source, mask, walks, main=main), []
        walked = self.walk.features(source, walks, mask)
        if sel is not None:
            walked = sel.rebase(walked, feats, mask)
        if main is not None:
            return [main] + self._on_walks(walked, mask), walked
        return self.run_head(feats, mask, walked), walked

    def _branch_weights(self) -> dict[str, Tensor] | None:
        """The parameters the propagated branches run on in place of the head's, by name, or None where they run on
        the head as it is: the branches' own copies (``branch_parameters``) and, in training with
        ``rskp.propagation.head_gradient`` off, the head's other weights detached (the same numbers, no gradient)."""
        weights: dict[str, Tensor] = {}
        if not self.head_gradient and self.training and torch.is_grad_enabled():
            # the head's weights as constants: the branches' losses train F (the embedding) and the summariser only
            weights = {name: p.detach() for name, p in self.head.named_parameters()}
        weights.update(zip(self.branch_names, self.branch_weights))
        return weights or None

    def _on_walks(self, walked: list[Propagated], mask: Tensor) -> list[HeadOutput]:
        """The head on each dense walked F* (B, T, d), drawing its random numbers (dropout) from a separate stream."""
        if not walked:
            return []
        with separate_random_stream(walked[0].features.device):
            weights = self._branch_weights()
            if weights is None:
                return [self.head(p.dense(), mask) for p in walked]
            return [torch.func.functional_call(self.head, weights, (p.dense(), mask)) for p in walked]

    def run_head(self, feats: Tensor, mask: Tensor, walked: list[Propagated]) -> list[HeadOutput]:
        """The head on F (B, T, d) and on each walked F*: [main, ...] (``forward_branches`` where the head has it)."""
        head = self.head
        if not (self.traits.forward_branches and self.factored_branches):
            return [head(feats, mask)] + self._on_walks(walked, mask)
        weights = self._branch_weights()
        if weights is None:  # every branch on the head's own weights: one call
            return list(head.forward_branches(feats, mask, walked))  # type: ignore[attr-defined]
        # the walked branches on other weights, still factored: ``forward_branches`` under those weights, whose
        # main-branch output is dropped for the head's own (one extra pass of the cheapest branch)
        if not walked:
            return [head(feats, mask)]
        with separate_random_stream(feats.device):
            on_walks = torch.func.functional_call(
                ForwardBranches(head), {f"head.{name}": w for name, w in weights.items()}, (feats, mask, walked))
        return [head(feats, mask)] + list(on_walks[1:])

    def fuse(self, main: HeadOutput, intra: HeadOutput) -> HeadOutput:
        """The test-time prediction: main fused with intra (``rskp.fusion``), or main alone."""
        if self.use_intra_at_test:
            return fuse_outputs(self.head, [main, intra], [self.test_main, 1.0 - self.test_main], self.traits)
        return main

    def forward(self, features: Tensor, mask: Tensor | None = None, labels: Tensor | None = None) -> RSKPOutput:
        """Run all branches; with labels, also the losses (and, in training after warm-up, a memory update).

        Args:
            features: (B, T, D) backbone features.
            mask: (B, T) bool, True on real snippets (None: all real).
            labels: (B, C) multi-hot video labels, or None at inference.

        Returns:
            RSKPOutput.
        """
        features, mask = validate_inputs(self.head, features, mask, labels)
        head = self.head
        if labels is not None and self.training and not self._scheduled:
            self._warn_unscheduled()
        feats = self.embed(features, mask)  # (B, T, d)
        sel, scored = self.select_representatives(feats, mask, bank=labels is not None and self.memory_ready and self.training)
        reps = sel.reps  # (B, n, d)
        walks: list[tuple[Tensor, Tensor | None]] = [(reps, sel.reps_mask)]  # intra: the video's own representatives
        offer = None  # (reps, scores) this training forward offers to the memory bank
        if labels is not None and self.memory_ready:
            if self.training:
                offer = self._offer(sel)
                # video i reads the bank as the official loop would: after videos < i of the batch updated it
                mem, mem_mask = self.memory.retrieve_in_order(*offer, labels)
            else:
                mem, mem_mask = self.memory.retrieve(labels)  # buffers: no gradient reaches the memory
            walks.append((mem.to(feats.dtype), mem_mask))  # inter: the memory of the video's classes
        # inter_fusion "early": one walk over [mu^a; mu^e] (the intra branch) instead of two
        (main, intra, *rest), walked = self.run_branches(feats, mask, self.walk.fuse(walks), sel, scored)
        inter = rest[0] if rest else None

        fused = self.fuse(main, intra)

        losses: dict[str, Tensor] = {}
        loss = None
        if labels is not None:
            losses = head_losses(head, main, labels, mask, self.weights)
            lc, ramp = self.weights, self.rampup if self.training else 1.0
            if self.walk.walks_features:  # propagated scores get no video-level L_cls (Table 5)
                losses["cls/intra"] = ramp * lc.intra_classification * head.classification_loss(intra, labels, mask)
                if inter is not None:
                    losses["cls/inter"] = ramp * lc.inter_classification * head.classification_loss(inter, labels,
                                                                                                      mask)
            if self.teacher.distill:
                alpha = ramp * (lc.distillation_after_warmup if self.memory_ready else lc.distillation)
                losses["distill"] = alpha * self.teacher.loss(main, self.teacher.pseudo_labels(main, intra, inter),
                                                              mask)
            else:  # the term stays in the record (0) so that every run logs the same keys
                losses["distill"] = main.tcam.new_zeros(())
            if lc.feature_loss != "none":  # supplement Table 3: F^a (the intra walk) pulled towards F
                losses["feature"] = ramp * lc.feature_weight * feature_distance(
                    feats, walked[0].dense(), mask, kind=lc.feature_loss)
            if lc.terms:  # the registered terms (``rskp.losses.terms``), after the built-in ones
                losses.update(registered_terms(lc, TermInputs(head, feats, mask, labels, main, intra, inter, walked),
                                               ramp))
            loss = torch.stack(list(losses.values())).sum()
            if offer is not None:
                self.memory.update(*offer, labels)
        return RSKPOutput(fused.video_scores, fused.cas, main.attention, main, intra, inter, reps, losses, loss,
                          fused.score_cas)

    def branch_outputs(self, features: Tensor, mask: Tensor | None = None, labels: Tensor | None = None) -> Branches:
        """Inference with every branch and the distillation teacher, for diagnostics: ``branch_outputs.branch_outputs``
        (the fused prediction, main and intra are what ``forward(features, mask)`` returns)."""
        return branch_outputs(self, features, mask, labels)

    @torch.no_grad()
    def initialize_memory(self, batches: Iterable[tuple[Tensor, Tensor | None, Tensor]]) -> None:
        """Fill the memory bank by one evaluation pass (dropout off, no gradients), as at the end of warm-up.

        Args:
            batches: iterable of (features (B, T, D), mask (B, T) or None, labels (B, C)).
        """
        was_training = self.training
        self.eval()
        self.memory.reset()
        try:
            for features, mask, labels in batches:
                features, mask = validate_inputs(self.head, features, mask, labels)
                sel, _ = self.select_representatives(self.embed(features, mask), mask, bank=True)  # the variant training uses
                self.memory.update(*self._offer(sel), labels)
        finally:
            self.train(was_training)
        self.memory.ready.fill_(self.memory_enabled)

    def predict(self, features: Tensor, mask: Tensor | None = None) -> RSKPOutput:
        """Inference in eval mode: fused video scores (B, C) and CAS (B, T, C); the caller's mode is restored."""
        return predict(self, features, mask)

    def inference(self, features: Tensor, mask: Tensor | None = None) -> RSKPOutput:
        """What evaluation reports, and only that: the test-time prediction of ``forward(features, mask)`` (video
        scores (B, C), CAS (B, T, C), attention (B, T), score CAS) with the same numbers. Without test-time fusion
        (``rskp.fusion.use_intra_at_test`` false, the default) that is the main branch, so neither the
        representatives, the walks nor the propagated branches run; ``intra``, ``inter`` and ``representatives``
        are None (``forward`` or ``branch_outputs`` give them)."""
        if self.use_intra_at_test:
            return self(features, mask)
        features, mask = validate_inputs(self.head, features, mask, None)
        main = self.head(self.embed(features, mask), mask)
        return RSKPOutput(main.video_scores, main.cas, main.attention, main, None, None, None, {}, None,
                          main.score_cas)


