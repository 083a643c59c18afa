"""Op-level profile of one traced training step (ResNet-50 FPN, batch 1, S x S; bench_train's model).

Runs 2 warm-up steps on cached batches, traces the third with tf.profiler, parses the XSpace
and prints op time summed per op type and per op name (summed over executor threads, so the
totals exceed the wall time). Env INTER / INTRA set TF inter-/intra-op threads.

    .venv/bin/python bench/profile_step.py [512]
"""
import collections, glob, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np, tensorflow as tf, keras
if os.environ.get("INTER"): tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["INTER"]))
if os.environ.get("INTRA"): tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["INTRA"]))
from bench.bench_train import make_config, synthetic_dataset
from mrcnn.data.data_pipeline import InputPipeline
from mrcnn.model import MaskRCNN
from mrcnn.engine.training import Trainer
size = int(sys.argv[1]) if len(sys.argv) > 1 else 512
config = make_config(size, 1, "resnet50")
keras.utils.set_random_seed(1)
model = MaskRCNN("training", config, "/tmp/bench_train_logs")
model.set_trainable("all", verbose=0)
tr = Trainer(model)
ds = synthetic_dataset(size, 8)
pipe = InputPipeline(ds, config, ds.image_ids, seed=1)
tr.build_steps(pipe.element_spec())
batches = list(tr.distribute(pipe, 0, 3))
for i in range(2):
    t = time.perf_counter(); tr.train_step_fn(batches[i], tf.constant([1, i], tf.int64))["loss"].numpy(); print("warm", time.perf_counter() - t)
logdir = "/tmp/mrcnn_profile_trace"
import shutil; shutil.rmtree(logdir, ignore_errors=True)
tf.profiler.experimental.start(logdir)
t = time.perf_counter(); tr.train_step_fn(batches[2], tf.constant([1, 2], tf.int64))["loss"].numpy(); print("profiled step", time.perf_counter() - t)
tf.profiler.experimental.stop()
from tensorflow.tsl.profiler.protobuf import xplane_pb2
path = glob.glob(logdir + "/**/*.xplane.pb", recursive=True)[0]
xs = xplane_pb2.XSpace(); xs.ParseFromString(open(path, "rb").read())
by_type = collections.Counter(); by_name = collections.Counter(); cnt = collections.Counter()
for plane in xs.planes:
    md = plane.event_metadata
    for line in plane.lines:
        if "tf_Compute" not in line.name and "tf_inter" not in line.name and "Eigen" not in line.name and "oneDNN" not in line.name.lower():
            pass
        for ev in line.events:
            name = md[ev.metadata_id].name
            if ":" in name:
                n, ty = name.rsplit(":", 1)
            else:
                n, ty = name, name
            by_type[(line.name[:20], ty)] += ev.duration_ps / 1e12
            by_name[(ty, n)] += ev.duration_ps / 1e12
            cnt[(line.name[:20], ty)] += 1
print("lines:", sorted({l.name for p in xs.planes for l in p.lines})[:30])
print("TOP by type")
for k, v in by_type.most_common(45): print(f"{v:8.3f} {cnt[k]:6d} {k}")
print("TOP by name")
for k, v in by_name.most_common(40): print(f"{v:8.3f} {k}")
