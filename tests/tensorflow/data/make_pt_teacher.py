"""Writes pt_bert/: a tiny BertForSequenceClassification saved by PyTorch as safetensors
({'format': 'pt'}), and the logits PyTorch computes for a fixed batch, which the
TensorFlow loader must reproduce without torch installed.

Run in an environment with torch and transformers: python make_pt_teacher.py
"""

import json
import os

import torch
from transformers import BertConfig, BertForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT_IDS = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]

torch.manual_seed(0)
config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                    vocab_size=99, max_position_embeddings=64, num_labels=3)
model = BertForSequenceClassification(config).eval()
model.save_pretrained(os.path.join(HERE, "pt_bert"), safe_serialization=True)
with torch.no_grad():
    logits = model(torch.tensor(INPUT_IDS)).logits
with open(os.path.join(HERE, "pt_bert_logits.json"), "w", encoding="utf-8") as fh:
    json.dump({"input_ids": INPUT_IDS, "logits": logits.tolist()}, fh, indent=1)
