#!/usr/bin/python3
"""Writes tests/data/tiny_yolo.onnx, a tiny deterministic detector for tests/teacher_test.cc.

Run with Debian's interpreter, which has python3-torch (the `python3` on PATH may not):
    /usr/bin/python3 scripts/make_onnx_fixture.py [output.onnx]

The model follows the YOLOv8 export convention: input [1, 3, 64, 64] (RGB, 0..1), output
[1, 4 + 3 classes, 5 candidates]. Box rows are constants in network-input pixels; class
scores are linear in the per-channel input means, so the test can check that the teacher
letterboxes with 114, swaps BGR to RGB and scales by 1/255. Only GlobalAveragePool,
Flatten, Gemm and Reshape are used: ops OpenCV 4.6's dnn importer handles.

Keep this table in sync with the expectations in tests/teacher_test.cc (OnnxTeacher tests).
"""
import os
import sys

import torch

INPUT_SIZE = 64
NUM_CLASSES = 3
# Per candidate: (cx, cy, w, h), then per class: (weight on mean R, G, B, bias).
CANDIDATES = [
    # 0: class 0 scores the red mean.
    ((32.0, 32.0, 20.0, 30.0), [(1, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)]),
    # 1: class 1 scores the blue mean.
    ((16.0, 24.0, 8.0, 12.0), [(0, 0, 0, 0), (0, 0, 1, 0), (0, 0, 0, 0)]),
    # 2: almost the same box as 0, 0.9x its score: removed by NMS.
    ((33.0, 32.0, 20.0, 30.0), [(0.9, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)]),
    # 3: class 2 at a constant 0.8 (tests use class_map to drop it).
    ((48.0, 40.0, 10.0, 16.0), [(0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0.8)]),
    # 4: class 1 at a constant 0.7, sticking out past the top-left: clipped to the frame.
    ((4.0, 18.0, 16.0, 8.0), [(0, 0, 0, 0), (0, 0, 0, 0.7), (0, 0, 0, 0)]),
]


class TinyYolo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        n = len(CANDIDATES)
        rows = 4 + NUM_CLASSES
        weight = torch.zeros(rows * n, 3)
        bias = torch.zeros(rows * n)
        for i, (box, classes) in enumerate(CANDIDATES):
            for r, v in enumerate(box):
                bias[r * n + i] = v
            for c, (wr, wg, wb, b) in enumerate(classes):
                weight[(4 + c) * n + i] = torch.tensor([wr, wg, wb])
                bias[(4 + c) * n + i] = b
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.linear = torch.nn.Linear(3, rows * n)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.rows, self.n = rows, n

    def forward(self, x):
        means = torch.flatten(self.pool(x), 1)  # [1, 3]: mean R, G, B
        return self.linear(means).reshape(1, self.rows, self.n)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data", "tiny_yolo.onnx")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    model = TinyYolo().eval()
    dummy = torch.full((1, 3, INPUT_SIZE, INPUT_SIZE), 0.5)
    torch.onnx.export(model, dummy, out, opset_version=12, input_names=["images"],
                      output_names=["output0"], do_constant_folding=True)
    with torch.no_grad():
        print("wrote", out, os.path.getsize(out), "bytes; output for 0.5 input:")
        print(model(dummy))


if __name__ == "__main__":
    main()
