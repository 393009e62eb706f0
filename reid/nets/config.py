"""What a generated net is and how it trains: size preset, Table-2 variant, batch, layer
implementation, and the solver schedule (the one home of every hyperparameter).

Paper sizes follow paper 4.2 (CaffeNet, 227 x 227, fc6 = fc7 = 1024, T = 6); the widths the
paper does not give are the defaults of docs/DESIGN.md §1.1-1.2 (K = 256, D2 = 512, C1 = 128,
Hd = 128, C2 = 64). The small preset keeps every layer type and shrinks input and widths so
that the nets train on 2 CPU cores (tests, demo).
"""
from dataclasses import dataclass, replace

from reid.datasets.transform import CAFFE_MEAN_BGR


@dataclass(frozen=True)
class NetSize:
    name: str
    height: int
    width: int
    conv: tuple          # output channels of conv1..conv5 (CaffeNet: 96 256 384 384 256)
    fc: int              # fc6 = fc7 width D1
    att: int             # TAM attention width K
    lstm: int            # TAM / RNN LSTM width D2
    srm_in: int          # C1, channels of E = relu(conv1x1(D))
    srm_hidden: int      # Hd, hidden width of each of the six spatial LSTMs
    srm_out: int         # C2, channels of G = relu(conv1x1(S6))
    dropout: float       # after fc6 and fc7 (CaffeNet: 0.5; 0 leaves the layers out)
    conv1_stride: int = 4  # CaffeNet: 4; the small preset uses 2 for a 6 x 3 pool5 grid
    conv1_kernel: int = 11  # CaffeNet: 11; the small preset 7 (its weights are its own)

    def pool5_shape(self):
        """(C, H, W) of pool5 for this input size (Caffe rounds pooling up)."""
        def conv(x, k, s, p):
            return (x + 2 * p - k) // s + 1

        def pool(x):
            return -(-(x - 3) // 2) + 1
        h, w = [pool(conv(pool(conv(pool(conv(x, self.conv1_kernel, self.conv1_stride, 0)), 5, 1, 2)), 3, 1, 1))
                for x in (self.height, self.width)]
        return self.conv[4], h, w


PAPER = NetSize("paper", 227, 227, (96, 256, 384, 384, 256), 1024, 256, 512, 128, 128, 64, 0.5)
# No dropout in the small nets: tiny widths do not need it, and without it a run resumed from
# a snapshot is bit-for-bit the uninterrupted run (Caffe does not snapshot its RNG state).
# Input 116 x 64 (the synthetic frames are 128 x 64) and conv1 7 x 7 at stride 2 give a pool5
# grid of 6 x 3 (conv1 55 x 29 -> pool1 27 x 14 -> pool2 13 x 7 -> pool5 6 x 3; the paper's
# is 6 x 6), so that the SRM's six sweeps have lines of 6 and 3 positions to run along.
# (CaffeNet's 11 x 11 conv1 at stride 2 costs twice the CPU time for the same grid.)
SMALL = NetSize("small", 116, 64, (16, 32, 48, 48, 32), 128, 64, 64, 32, 16, 16, 0.0,
                conv1_stride=2, conv1_kernel=7)
SIZES = {s.name: s for s in (PAPER, SMALL)}


@dataclass(frozen=True)
class Variant:
    """A row of the paper's Table 2 (docs/DESIGN.md §1.4): its nets and how it is scored."""
    name: str
    label: str           # the row label of Table 2
    temporal: str        # 'mean' (mean-pooled fc7), 'rnn' (LSTM), 'tam' (attention + LSTM)
    metric: str          # '' (Euclidean on F only), 'diff' (pool5 difference -> FC), 'srm'
    triplet: bool        # trains F with the triplet loss (variants with a feature model)

    def __post_init__(self):
        if not (self.metric or self.triplet):
            raise ValueError("variant %s trains nothing (no triplet loss, no metric)" % self.name)

    @property
    def mode(self):
        """Test-time scoring (reid.evaluation.rerank modes): with F and M, eq. 2 on the top
        k ('joint', ALL); F alone, d ('distance'); M alone over every gallery item
        ('metric', CNN+DIFF and CNN+SRM, which train no F)."""
        if self.metric:
            return "joint" if self.triplet else "metric"
        return "distance"


VARIANTS = {v.name: v for v in (      # in the order of the rows of Table 2
    Variant("cnn", "CNN", "mean", "", True),
    Variant("cnn_rnn", "CNN+RNN", "rnn", "", True),
    Variant("cnn_tam", "CNN+TAM", "tam", "", True),
    Variant("cnn_diff", "CNN+DIFF", "mean", "diff", False),
    Variant("cnn_srm", "CNN+SRM", "mean", "srm", False),
    Variant("all", "ALL", "tam", "srm", True),
)}


@dataclass(frozen=True)
class Schedule:
    """SGD of one training (Caffe solver fields) and its batch of B triplets (3B sequences).
    The defaults are the paper's MARS training (paper 4.2: fine-tuning CaffeNet)."""
    max_iter: int = 40000
    stepsize: int = 20000            # lr x 0.1 every stepsize iterations
    base_lr: float = 0.001
    display: int = 20                # loss readings (averaged over as many iterations)
    snapshot: int = 2000
    clip_gradients: float = 10
    batch_triplets: int = 8

    def scaled(self, iters, base_lr=None):
        """This schedule stretched to `iters`: lr x 0.1 after 2/3, about 5 snapshots, a loss
        reading every ~1/30 of the run (at most every 20 iterations)."""
        return replace(self, max_iter=iters, stepsize=max(1, 2 * iters // 3),
                       snapshot=max(1, iters // 5), display=max(1, min(20, iters // 30)),
                       base_lr=self.base_lr if base_lr is None else base_lr)


# iLIDS-VID and PRID2011 fine-tune from the MARS model (paper 4.3): fewer iterations.
PAPER_SCHEDULES = {"mars": Schedule(),
                   "ilidsvid": Schedule(max_iter=10000, stepsize=5000),
                   "prid2011": Schedule(max_iter=10000, stepsize=5000)}
# The small nets on a CPU, as the demo and the Table 2 study train them (docs/TABLE2.md):
# 600 iterations of B = 4 at lr 1e-3, the paper's fine-tuning rate: they start from the
# pretrained trunk (reid.pretrain). Measured: from the pretrained trunk at 3e-3 even the
# plain CNN's F collapses (test-F spread 0.92 -> 0.07 in 200 iterations, fc7 growing
# eightfold), at 1e-3 it does not (0.84). From random weights, 3e-3 collapsed every
# LSTM-based F until NetConfig.frame_norm (gates saturated), and with it does not.
SMALL_SCHEDULE = Schedule(batch_triplets=4, base_lr=1e-3).scaled(600)
# Fine-tuning the small MARS model on one split of iLIDS-VID or PRID2011: a quarter of the
# MARS iterations, as the paper's 10000 of 40000.
SMALL_FINETUNE = SMALL_SCHEDULE.scaled(SMALL_SCHEDULE.max_iter // 4)
SCHEDULES = {"paper": PAPER_SCHEDULES,
             "small": {"mars": SMALL_SCHEDULE, "ilidsvid": SMALL_FINETUNE,
                       "prid2011": SMALL_FINETUNE}}


@dataclass(frozen=True)
class NetConfig:
    size: NetSize = PAPER
    variant: Variant = VARIANTS["all"]
    seq_len: int = 6                 # T (paper 4.2)
    batch_triplets: int = PAPER_SCHEDULES["mars"].batch_triplets   # B triplets per iteration
    deploy_batch: int = 8            # sequences (features net) or pairs (metric net) per forward
    impl: str = "native"             # 'native' or 'python' for AttentionAverage and SpatialLSTM
    tam_context: str = "context"     # z_{t-1}: 'context' (xbar_{t-1}), 'cell' (c_{t-1}), 'none'
    margin: float = 0.3              # triplet margin on L2-normalised F (docs/DESIGN.md §1.3)
    metric_weight: float = 1.0       # lambda_m, weight of the metric loss
    mining: str = "hard"             # 'hard', 'semihard' or 'random' (paper 4.2)
    # Not in the paper (docs/DESIGN.md 1.3): the SRM's negative pairs. 'mixed': (anchor, mined
    # negative) and (anchor, the batch's randomly sampled negative), so the pair loss sees
    # ordinary negatives too; 'mined': the mined one only (hard mining alone lets the SRM
    # learn to separate near-duplicates and nothing else).
    metric_negatives: str = "mixed"
    # Not in the paper: f_i fed to every temporal model is fc7 divided by its root mean
    # square (reid.nets.temporal.frame_features). 'rms' keeps the TAM's tanh and the LSTM's
    # gate pre-activations near unit scale however large fc7 grows; 'none' feeds raw fc7 (at
    # lr 3e-3 fc7 grows ~10x, the gates saturate and every LSTM-based F collapses).
    frame_norm: str = "rms"
    data_source: str = "data/mars"   # prepared dataset folder (reid.datasets)
    mean_bgr: tuple = CAFFE_MEAN_BGR
    mirror: bool = True
    seed: int = 1
    workers: int = 2
    split_index: int | None = None   # iLIDS-VID / PRID2011: which of the ten splits it trains on

    def with_(self, **kw):
        return replace(self, **kw)

    def data_params(self):
        """param_str of the training data layer (python_layers/sequence_data.py)."""
        s = self.size
        params = dict(source=self.data_source, split="train",
                      batch_triplets=self.batch_triplets, seq_len=self.seq_len,
                      height=s.height, width=s.width, mean=list(self.mean_bgr),
                      mirror=self.mirror, seed=self.seed, workers=self.workers)
        if self.split_index is not None:       # else the layer's default, split 0
            params["split_index"] = self.split_index
        return params
