"""Slider latency of the browser editor: from a render request to its PNG received, over HTTP, as the page asks.

    python -m experiments.benchmarks.bench_app_latency [--moves 40] [--resolution 64|1024] [--threads N]

The editor's server runs in this process on a free port (`experiments.app.EditorServer`); a client uploads
the astronaut photo, inverts its face into W+, F/Z+ and F/W+ (the quick recipe, `--steps` steps: the
seconds per step are printed too), then moves a GANSpace slider `--moves` times (alternating alphas, so
no two requests in a row ask for the same image) for each space and for each compensation head. Printed
per tile: the median and 90th percentile of request-to-PNG seconds, and the server's own share (the
render alone, `X-Render-Seconds`). At 64 px the generator, encoder and heads are the shipped defaults; at
1024 px a random-weight config-f generator, an untrained W+ encoder and an SDIC head of the released
layer (width 0.25), which time the same computation as trained weights would.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import threading
import time
import urllib.request
import uuid
from urllib.parse import quote

import torch
from PIL import Image
from skimage import data as skimage_data

import latentspaces as ls
from encoders import SDIC, WPlusEncoder, load_encoder
from experiments.app import Editor, EditorServer, default_sliders
from experiments.app.editor import SLIDER_COMPONENTS, SLIDER_SAMPLES
from latentspaces import assets
from latentspaces.generator import Generator
from latentspaces.threads import use_threads


def _editor(resolution: int) -> Editor:
    if resolution == 64:
        G = ls.load_generator("default")
        heads = {name: load_encoder(assets.default_head(name.lower())) for name in ("SDIC", "HFGI", "GradStyle", "ReGANIE")}
        return Editor(G, assets.DEFAULT_GENERATOR, default_sliders(G, SLIDER_COMPONENTS, SLIDER_SAMPLES),
                      base_encoder=load_encoder(assets.DEFAULT_WPLUS_ENCODER),
                      heads=heads)
    torch.manual_seed(0)
    G = Generator(resolution=resolution).eval()
    return Editor(G, f"random config-f {resolution}", default_sliders(G, 2, 2000),
                  base_encoder=WPlusEncoder.for_generator(G).eval(),
                  heads={"SDIC": SDIC.for_generator(G, width=0.25).eval()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=40)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--resolution", type=int, choices=(64, 1024), default=64)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    print(use_threads(args.threads).note or f"threads: {torch.get_num_threads()}")
    editor = _editor(args.resolution)
    editor.warm_up()
    server = EditorServer(("127.0.0.1", 0), editor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base, session = server.url.rstrip("/"), uuid.uuid4().hex

    def request(path: str, body: bytes = None, **params):
        query = "&".join(f"{k}={quote(str(v))}" for k, v in {"s": session, **params}.items())
        req = urllib.request.Request(f"{base}{path}?{query}", data=body, method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.read(), r.headers

    photo = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(photo, format="png")
    pid = json.loads(request("/api/photo", photo.getvalue(), name="astronaut.png")[0])["photo"]
    spaces = ["WPlus", "FZPlus", "FWPlus"]
    job = json.loads(request("/api/invert", json.dumps({"photo": pid, "face": 0, "spaces": spaces, "recipe": "quick",
                                                         "steps": args.steps}).encode())[0])
    t = time.perf_counter()
    while (state := json.loads(request("/api/job", job=job["job"])[0]))["state"] in ("queued", "running"):
        time.sleep(0.05)
    assert state["state"] == "done", state
    print(f"{ls.__name__} editor at {editor.G.resolution} px: inverted into {', '.join(spaces)} ({args.steps} quick "
          f"steps each) in {time.perf_counter() - t:.1f} s ({state['seconds_per_step']:.3f} s/step in the last)")
    tiles = [{"space": s, "recipe": job["recipe"]} for s in spaces] + [{"head": h} for h in sorted(editor.heads)]
    print("| tile | request to PNG, median (s) | 90th percentile (s) | server render, median (s) |")
    print("| --- | ---: | ---: | ---: |")
    for tile in tiles:
        request("/api/render.png", photo=pid, face=0, edit=json.dumps({"ganspace_0": 0.1}), **tile)   # warm
        total, server_side = [], []
        for i in range(args.moves):
            edit = json.dumps({"ganspace_0": round(-2 + 4 * (i % 2) + 0.01 * i, 2)})
            t = time.perf_counter()
            _, headers = request("/api/render.png", photo=pid, face=0, edit=edit, **tile)
            total.append(time.perf_counter() - t)
            server_side.append(float(headers["X-Render-Seconds"]))
        total.sort()
        name = tile.get("space") or f"W+ encoder + {tile['head']}"
        print(f"| {name} | {statistics.median(total):.3f} | {total[int(0.9 * (len(total) - 1))]:.3f} | "
              f"{statistics.median(server_side):.3f} |")
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
