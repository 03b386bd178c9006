"""kmesh_lab.loadgen: one parser for fortio's JSON and the wrk fallback's JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kmesh_lab import loadgen

# Shaped like `fortio load -json` output (fortio 1.x HTTP run, values made up).
FORTIO_JSON = {
    "RunType": "HTTP",
    "Labels": "",
    "StartTime": "2024-03-08T10:00:00.000000000Z",
    "RequestedQPS": "max",
    "RequestedDuration": "30s",
    "ActualQPS": 1234.5,
    "ActualDuration": 30000123456,
    "NumThreads": 16,
    "Version": "1.63.0",
    "DurationHistogram": {
        "Count": 37035,
        "Min": 0.000234,
        "Max": 0.045123,
        "Sum": 456.789,
        "Avg": 0.012334,
        "StdDev": 0.002345,
        "Data": [{"Start": 0.000234, "End": 0.045123, "Percent": 100, "Count": 37035}],
        "Percentiles": [
            {"Percentile": 50, "Value": 0.0112},
            {"Percentile": 75, "Value": 0.0138},
            {"Percentile": 90, "Value": 0.0164},
            {"Percentile": 99, "Value": 0.0281},
            {"Percentile": 99.9, "Value": 0.0402},
        ],
    },
    "RetCodes": {"200": 37030, "503": 3, "-1": 2},
    "Sizes": {"Count": 37035, "Min": 0, "Max": 256, "Sum": 9480960, "Avg": 256},
    "SocketCount": 37035,
    "URL": "http://fortio-server:8080/",
}

# Shaped like tools/fortio_wrk.lua output.
WRK_JSON = {
    "RunType": "HTTP",
    "Runner": "wrk",
    "Labels": "",
    "StartTime": "2026-11-23T09:00:00.000000000Z",
    "RequestedQPS": "500",
    "RequestedDuration": "2s",
    "ActualQPS": 499.5,
    "ActualDuration": 2002000000,
    "NumThreads": 4,
    "WrkThreads": 2,
    "KeepAlive": True,
    "URL": "http://127.0.0.1:8080/",
    "DurationHistogram": {
        "Count": 1000,
        "Min": 1.3e-05,
        "Max": 0.0131,
        "Sum": 0.5,
        "Avg": 0.0005,
        "StdDev": 0.0016,
        "Percentiles": [
            {"Percentile": 50, "Value": 6.2e-05},
            {"Percentile": 99.9, "Value": 0.0105},
        ],
    },
    "RetCodes": {"200": 1000},
    "SocketCount": 4,
    "SocketCountSource": "derived",
    "TcpActiveOpens": 5,
}


def write(tmp_path: Path, data: object, name: str = "load.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_parses_fortio_json(tmp_path: Path) -> None:
    res = loadgen.parse(write(tmp_path, FORTIO_JSON))
    assert res.runner == "fortio"
    assert res.qps == 1234.5
    assert res.requested_qps is None
    assert res.duration_s == pytest.approx(30.000123456)
    assert res.connections == 16
    assert res.count == 37035
    assert res.percentile(99) == 0.0281
    assert res.percentile(99.9) == 0.0402
    assert res.ret_codes == {200: 37030, 503: 3, -1: 2}
    assert res.ok == 37030
    assert res.errors == 5
    assert res.socket_count == 37035
    assert res.keepalive is None
    assert res.extra["Version"] == "1.63.0"


def test_parses_wrk_json(tmp_path: Path) -> None:
    res = loadgen.parse(write(tmp_path, WRK_JSON))
    assert res.runner == "wrk"
    assert res.requested_qps == 500.0
    assert res.keepalive is True
    assert res.tcp_active_opens == 5
    assert res.errors == 0
    assert res.extra["WrkThreads"] == 2


def test_sample_is_flat_and_in_ms(tmp_path: Path) -> None:
    sample = loadgen.parse(write(tmp_path, FORTIO_JSON)).to_sample()
    assert sample["p50_ms"] == pytest.approx(11.2)
    assert sample["p99_9_ms"] == pytest.approx(40.2)
    assert sample["avg_ms"] == pytest.approx(12.334)
    assert sample["ret_codes"] == {"-1": 2, "200": 37030, "503": 3}
    json.dumps(sample)  # JSON-ready


def test_numeric_requested_qps_and_zero(tmp_path: Path) -> None:
    data = copy.deepcopy(FORTIO_JSON)
    data["RequestedQPS"] = "0"
    assert loadgen.parse(write(tmp_path, data)).requested_qps is None
    data["RequestedQPS"] = 1000
    assert loadgen.parse(write(tmp_path, data)).requested_qps == 1000.0


def test_empty_run_is_valid(tmp_path: Path) -> None:
    data = copy.deepcopy(WRK_JSON)
    data["DurationHistogram"] = {"Count": 0, "Percentiles": []}
    data["RetCodes"] = {"-1": 7}
    data["ActualQPS"] = 0
    res = loadgen.parse(write(tmp_path, data))
    assert (res.count, res.ok, res.errors) == (0, 0, 7)


def test_missing_percentile_says_how_to_get_it(tmp_path: Path) -> None:
    res = loadgen.parse(write(tmp_path, WRK_JSON))
    with pytest.raises(KeyError, match="-p"):
        res.percentile(95)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("ActualQPS"), "ActualQPS"),
        (lambda d: d.update(ActualQPS="fast"), "ActualQPS"),
        (lambda d: d.update(ActualDuration=-1), "ActualDuration is negative"),
        (lambda d: d.pop("DurationHistogram"), "DurationHistogram"),
        (lambda d: d["DurationHistogram"].update(Count=1.5), "Count"),
        (lambda d: d["DurationHistogram"].pop("Avg"), "Avg"),
        (lambda d: d["DurationHistogram"].update(Min=1.0), "Min"),
        (lambda d: d["DurationHistogram"]["Percentiles"][0].pop("Value"), r"Percentiles\[0\]"),
        (lambda d: d.update(RetCodes={"OK": 3}), "RetCodes key 'OK'"),
        (lambda d: d.update(RetCodes={"200": -3}), "RetCodes"),
        (lambda d: d.update(SocketCount="many"), "SocketCount"),
        (lambda d: d.update(Runner="ab"), "Runner"),
        (lambda d: d.update(RequestedQPS="lots"), "RequestedQPS"),
    ],
)
def test_malformed_files_are_rejected(tmp_path: Path, mutate, message: str) -> None:
    data = copy.deepcopy(WRK_JSON)
    mutate(data)
    with pytest.raises(loadgen.LoadResultError, match=message) as err:
        loadgen.parse(write(tmp_path, data))
    assert "tools/fortio.sh load -json" in str(err.value)


def test_not_json_and_not_object(tmp_path: Path) -> None:
    with pytest.raises(loadgen.LoadResultError, match="not valid JSON"):
        loadgen.parse(write(tmp_path, "All done 40 calls"))
    with pytest.raises(loadgen.LoadResultError, match="not a JSON object"):
        loadgen.parse(write(tmp_path, [1, 2]))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(loadgen.LoadResultError, match="cannot read"):
        loadgen.parse(tmp_path / "absent.json")


def test_cli_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert loadgen._main(["sample", str(write(tmp_path, WRK_JSON))]) == 0
    assert json.loads(capsys.readouterr().out)["qps"] == 499.5
    assert loadgen._main(["sample", str(tmp_path / "absent.json")]) == 1
    assert loadgen._main([]) == 2
