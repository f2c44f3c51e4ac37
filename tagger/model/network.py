"""The network: embed (words, characters) -> encode (BiLSTM) -> project (emissions).

Decoding and loss are separate calls on the per-task decoders (CRF or softmax), so
training never runs Viterbi and ``forward`` always returns one thing: emissions per task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tagger.config import CharConfig, EncoderConfig, ModelConfig
from tagger.data.batching import CASINGS
from tagger.model.crf import CRF, SoftmaxDecoder

Constraints = tuple[Sequence[bool], Sequence[Sequence[bool]], Sequence[bool]]
_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class CharEncoder(nn.Module):
    """One vector per word form from its characters: a CNN with max-pooling, or a BiLSTM."""

    def __init__(self, config: CharConfig, num_chars: int):
        super().__init__()
        self.kind = config.encoder
        self.embed = nn.Embedding(num_chars, config.dim, padding_idx=0)
        if self.kind == "cnn":
            self.conv = nn.Conv1d(config.dim, config.hidden, config.kernel, padding=config.kernel // 2)
            self.output_dim = config.hidden
        else:
            self.lstm = nn.LSTM(config.dim, config.hidden, batch_first=True, bidirectional=True)
            self.output_dim = 2 * config.hidden

    def forward(self, chars: Tensor) -> Tensor:
        """(U, C) char ids -> (U, output_dim)."""
        mask = chars != 0  # (U, C)
        embedded = self.embed(chars)  # (U, C, D)
        if self.kind == "cnn":
            if self.training:
                hidden = self.conv(embedded.transpose(1, 2)).transpose(1, 2)  # (U, C', H)
                hidden = hidden[:, : chars.size(1)]  # even kernels pad one extra step
            else:
                hidden = self._windows_times_filters(embedded)  # (U, C, H)
            return hidden.masked_fill(~mask.unsqueeze(2), -1e4).max(dim=1).values  # (U, H)
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n: (2, U, H)
        return torch.cat([h_n[0], h_n[1]], dim=1)  # (U, 2H)

    def _windows_times_filters(self, embedded: Tensor) -> Tensor:
        """The convolution as one matrix product over character windows, for inference.

        Same numbers as ``self.conv``; but a oneDNN convolution builds and caches a kernel for
        every new input shape, and batches of words come in endless shapes: tagging with it
        grew a process by 50 MB in under two minutes. A plain GEMM has no per-shape state.
        """
        size, length, dim = embedded.shape
        kernel = self.conv.kernel_size[0]
        padded = nn.functional.pad(embedded, (0, 0, kernel // 2, kernel - 1 - kernel // 2))  # (U, C+k-1, D)
        windows = padded.unfold(1, kernel, 1).transpose(2, 3).reshape(size * length, kernel * dim)  # [k][d]
        filters = self.conv.weight.permute(2, 1, 0).reshape(kernel * dim, -1)  # (k*D, H)
        return torch.addmm(self.conv.bias, windows, filters).view(size, length, -1)


class SequenceEncoder(nn.Module):
    """Bidirectional LSTM/GRU/RNN over packed sequences; directions concatenated or averaged."""

    def __init__(self, config: EncoderConfig, input_dim: int):
        super().__init__()
        self.merge = config.merge
        self.rnn = _CELLS[config.cell](
            input_dim, config.hidden, num_layers=config.layers, batch_first=True, bidirectional=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.output_dim = config.hidden * (2 if config.merge == "concat" else 1)

    def forward(self, inputs: Tensor, mask: Tensor) -> Tensor:
        """(B, T, D) inputs -> (B, T, output_dim), zeros at padding."""
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.rnn(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=inputs.size(1))  # (B, T, 2H)
        if self.merge == "average":
            forward, backward = output.chunk(2, dim=2)
            output = (forward + backward) / 2
        return output


class SequenceTagger(nn.Module):
    """BiLSTM tagger with one linear head and one decoder per task.

    Args:
        config: the model section of the config.
        num_words: size of the word vocabulary.
        num_chars: size of the character vocabulary.
        num_labels: task -> number of labels (in the task's internal encoding).
        constraints: task -> allowed transitions, for CRF tasks with span labels.
    """

    def __init__(self, config: ModelConfig, num_words: int, num_chars: int, num_labels: Mapping[str, int],
                 constraints: Mapping[str, Constraints] | None = None):
        super().__init__()
        constraints = constraints or {}
        self.word_embed = nn.Embedding(num_words, config.word_dim, padding_idx=0)
        self.chars = CharEncoder(config.char, num_chars) if config.char.encoder != "none" else None
        self.casing = nn.Embedding(len(CASINGS), config.casing_dim, padding_idx=0) if config.casing_dim else None
        input_dim = config.word_dim + (self.chars.output_dim if self.chars else 0) + config.casing_dim
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = SequenceEncoder(config.encoder, input_dim)
        self.heads = nn.ModuleDict({t: nn.Linear(self.encoder.output_dim, n) for t, n in num_labels.items()})
        decoders: dict[str, nn.Module] = {}
        for task in config.tasks:
            if task.decoder == "crf":
                decoders[task.name] = CRF(num_labels[task.name], constraints.get(task.name))
            else:
                decoders[task.name] = SoftmaxDecoder()
        self.decoders = nn.ModuleDict(decoders)

    def forward(self, words: Tensor, chars: Tensor, char_index: Tensor, mask: Tensor,
                casing: Tensor | None = None) -> dict[str, Tensor]:
        """Emission scores per task.

        Args:
            words: (B, T) word ids.
            chars: (U, C) character ids of the distinct forms.
            char_index: (B, T) row in ``chars`` of each token.
            mask: (B, T) True on real tokens.
            casing: (U,) casing class of each distinct form; needed when ``casing_dim`` > 0.

        Returns:
            task -> (B, T, L_task) emissions.
        """
        embedded = self.dropout(self.features(words, chars, char_index, casing))
        encoded = self.dropout(self.encoder(embedded, mask))  # (B, T, H)
        return {task: head(encoded) for task, head in self.heads.items()}

    def features(self, words: Tensor, chars: Tensor, char_index: Tensor, casing: Tensor | None = None) -> Tensor:
        """The encoder's input: word, character and casing features concatenated, (B, T, D)."""
        features = [self.word_embed(words).float()]  # (B, T, Dw); a loaded table may be fp16
        if self.chars is not None:
            forms = self.chars(chars)  # (U, Dc)
            features.append(forms[char_index])  # (B, T, Dc)
        if self.casing is not None:
            if casing is None:
                raise ValueError("this model has a casing feature: pass the batch's casing classes")
            features.append(self.casing(casing)[char_index])  # (B, T, Dk)
        return torch.cat(features, dim=2)

    def loss(self, emissions: Mapping[str, Tensor], tags: Mapping[str, Tensor], has_tags: Mapping[str, Tensor],
             mask: Tensor) -> Tensor:
        """Negative log-likelihood summed over tasks and sentences, divided by the batch size
        (sentences without a task's labels add nothing to that task's term)."""
        total = emissions[next(iter(emissions))].new_zeros(())
        for task, gold in tags.items():
            rows = has_tags[task]
            nll = -self.decoders[task].log_likelihood(emissions[task][rows], gold[rows], mask[rows])
            total = total + nll.sum() / max(int(mask.size(0)), 1)
        return total

    def decode(self, emissions: Mapping[str, Tensor], mask: Tensor, scores: bool = True
               ) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Best tags per task and, if ``scores``, the marginal of each chosen tag."""
        return decode_tasks(self.decoders, emissions, mask, scores)


@torch.no_grad()
def decode_tasks(decoders: Mapping[str, nn.Module], emissions: Mapping[str, Tensor], mask: Tensor,
                 scores: bool = True) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Decode each task's emissions with its decoder (CRF or softmax).

    Returns:
        task -> ((B, T) tag ids, (B, T) probabilities of the chosen tags, or None).
    """
    result: dict[str, tuple[Tensor, Tensor | None]] = {}
    for task, decoder in decoders.items():
        tags = decoder.decode(emissions[task], mask)
        probs = None
        if scores:
            probs = decoder.tag_marginals(emissions[task], mask, tags)
        result[task] = (tags, probs)
    return result
