"""Every CSV the project writes neutralises formula cells and reads back exactly."""

import csv

import pandas as pd

from agent_pipeline.lib.core.csvfiles import read_csv, write_csv

CELLS = ["=cmd|' /C calc'!A0", "+1 555", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "'quoted", "plain", "a=b", ""]


def test_formula_cells_are_neutralised_and_read_back_exactly(tmp_path):
    df = pd.DataFrame({"text": CELLS, "confidence": [-0.5 + i for i in range(len(CELLS))]})
    path = write_csv(df, tmp_path / "items.csv")
    raw = path.read_text()
    assert '\n"=cmd' not in raw and "'=cmd|' /C calc'!A0" in raw
    assert ",-0.5\n" in raw  # numbers stay numbers (not neutralised, not quoted)
    with path.open(newline="") as fh:  # what a spreadsheet sees: every text cell, unquoted
        cells = [c for row in csv.reader(fh) for c in row[:1]]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), cells
    back = read_csv(path)
    assert back["text"].tolist() == CELLS
    assert back["confidence"].astype(float).tolist() == df["confidence"].tolist()
    assert not list(tmp_path.glob(".*.tmp"))
