"""The labelling page: one self-contained HTML document (inline CSS and JS, no build step).

Kept as a Python string so it ships with the package without package-data configuration.
The page reads ``?token=`` once, keeps it in ``sessionStorage``, removes it from the address
bar and sends it as ``Authorization: Bearer`` on every API call. Clips are fetched with that
header and played from blob URLs (a ``<video src>`` request cannot carry the header). A text
query (``kind: "text"``) shows its prompt and the two completions side by side instead of the
clips (set as ``textContent``, never as HTML); the keys and buttons are the same.
"""

PAGE_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RewardLab: which is better?</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #222; }
  header { display: flex; justify-content: space-between; padding: .6rem 1rem;
           background: #2d3142; color: #fff; }
  main { max-width: 1100px; margin: 1rem auto; padding: 0 1rem; }
  .clips { display: flex; gap: 1rem; justify-content: center; }
  .clip { flex: 1; text-align: center; }
  .clip > div { font-weight: 600; margin-bottom: .3rem; }
  video { width: 100%; max-width: 520px; background: #000; border-radius: 6px; }
  .buttons { display: flex; gap: .6rem; justify-content: center; margin: 1rem 0; }
  button { font-size: 1.05rem; padding: .6rem 1.1rem; border-radius: 6px; border: 1px solid #888;
           background: #fff; cursor: pointer; }
  button:disabled { opacity: .45; cursor: default; }
  kbd { font-size: .8rem; background: #eee; border: 1px solid #bbb; border-radius: 3px;
        padding: 0 .3rem; }
  #status { text-align: center; min-height: 1.4rem; color: #a33; }
  #waiting { text-align: center; font-size: 1.3rem; padding: 3rem 0; display: none; }
  #recent { margin-top: 1.5rem; }
  #recent li { margin: .2rem 0; }
  #recent li button { font-size: .85rem; padding: .15rem .6rem; margin-left: .4rem; }
  .muted { color: #777; }
  #training { text-align: center; padding: .5rem; border-radius: 6px; margin-bottom: .6rem;
              background: #e8eaf2; }
  #training.waiting { background: #fff3cd; font-weight: 600; }
  #suggestion { text-align: center; color: #555; min-height: 1.2rem; }
  #text-query { display: none; }
  #prompt-line { text-align: center; margin: .8rem 0 .6rem; }
  .clip > div.completion { font-weight: 400; text-align: left; white-space: pre-wrap;
                           background: #fff; border: 1px solid #ccc; border-radius: 6px;
                           padding: .8rem 1rem; min-height: 4rem; font-size: 1.1rem;
                           overflow-wrap: anywhere; }
  .completion .context { color: #777; }
  .completion .continuation { font-weight: 600; }
</style>
</head>
<body>
<header><span>RewardLab labelling</span><span id="who"></span></header>
<main>
  <div id="training">Connecting&hellip;</div>
  <div id="progress" class="muted"></div>
  <div id="waiting">Nothing to label right now: waiting for the next round&hellip;</div>
  <div id="task">
    <div class="clips" id="clip-query">
      <div class="clip"><div>Left</div>
        <video id="left" muted playsinline preload="auto"></video></div>
      <div class="clip"><div>Right</div>
        <video id="right" muted playsinline preload="auto"></video></div>
    </div>
    <div id="text-query">
      <div id="prompt-line"><span class="muted">Which continuation is better?
        Prompt:</span> <span id="prompt"></span></div>
      <div class="clips">
        <div class="clip"><div>Left</div><div class="completion" id="left-text"></div></div>
        <div class="clip"><div>Right</div><div class="completion" id="right-text"></div></div>
      </div>
    </div>
    <div id="suggestion"></div>
    <div class="buttons">
      <button disabled data-label="left">&larr; Left better <kbd>&larr;</kbd></button>
      <button disabled data-label="equal">Equal <kbd>=</kbd></button>
      <button disabled data-label="skip">Can't tell <kbd>Space</kbd></button>
      <button disabled data-label="right">Right better <kbd>&rarr;</kbd> &rarr;</button>
    </div>
  </div>
  <div id="status"></div>
  <section id="recent"><h3>Your recent answers</h3><ul id="recent-list"></ul></section>
</main>
<script>
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  if (params.get("token")) {
    sessionStorage.setItem("rewardlab-token", params.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  const token = sessionStorage.getItem("rewardlab-token");
  const $ = (id) => document.getElementById(id);
  const videos = [$("left"), $("right")];
  const buttons = Array.from(document.querySelectorAll("button[data-label]"));
  let current = null, busy = false, pollTimer = null, blobUrls = [];

  function api(path, options) {
    options = options || {};
    options.headers = Object.assign({}, options.headers, {Authorization: "Bearer " + token});
    return fetch(path, options);
  }
  async function errorText(resp) {
    try { return (await resp.json()).error || resp.statusText; }
    catch (e) { return resp.statusText; }
  }
  function setStatus(text) { $("status").textContent = text || ""; }
  function setBusy(value) {
    busy = value;
    buttons.forEach((b) => { b.disabled = value || !current; });
  }

  function restartBoth() {
    videos.forEach((v) => { v.currentTime = 0; });
    videos.forEach((v) => { v.play().catch(() => {}); });
  }
  // looped together: whenever either clip ends, both restart from the first frame
  videos.forEach((v) => v.addEventListener("ended", restartBoth));

  async function loadClips(q) {
    const blobs = await Promise.all([q.left, q.right].map(async (side) => {
      const resp = await api(side.clip_url);
      if (!resp.ok) throw new Error("clip " + side.segment_id + ": " + await errorText(resp));
      return resp.blob();
    }));
    blobUrls.forEach((u) => URL.revokeObjectURL(u));
    blobUrls = blobs.map((b) => URL.createObjectURL(b));
    const sides = [q.left, q.right];
    await Promise.all(videos.map((v, i) => new Promise((resolve, reject) => {
      v.oncanplay = () => { v.oncanplay = v.onerror = null; resolve(); };
      v.onerror = () => {
        v.oncanplay = v.onerror = null;
        reject(new Error("cannot play the clip of segment " + sides[i].segment_id));
      };
      v.src = blobUrls[i];
      v.load();
    })));
    restartBoth();
  }

  // a text query: the prompt (muted) and each completion (bold), as text, never as HTML
  function showText(q) {
    videos.forEach((v) => { v.pause(); v.removeAttribute("src"); v.load(); });
    blobUrls.forEach((u) => URL.revokeObjectURL(u));
    blobUrls = [];
    $("clip-query").style.display = "none";
    $("text-query").style.display = "block";
    $("prompt").textContent = q.prompt || "";
    [["left-text", q.left], ["right-text", q.right]].forEach(([id, side]) => {
      const box = $(id);
      box.textContent = "";
      const context = document.createElement("span");
      context.className = "context";
      context.textContent = q.prompt || "";
      const continuation = document.createElement("span");
      continuation.className = "continuation";
      continuation.textContent = side.completion;
      box.append(context, continuation);
    });
  }
  async function showClips(q) {
    $("text-query").style.display = "none";
    $("clip-query").style.display = "flex";
    await loadClips(q);
  }

  function clock(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }
  let budgetText = "";
  async function loadTraining() {
    try {
      const resp = await api("/api/status");
      if (!resp.ok) return;
      const t = await resp.json();
      const el = $("training");
      el.className = t.state === "waiting" ? "waiting" : "";
      budgetText = t.budget ? " \u00b7 " + t.asked + " of a budget of " + t.budget +
        " queries asked" : "";
      if (t.state === "waiting") {
        let text = "Training is paused until round " + t.round + " is answered: " +
          t.answered + " of " + t.round_size + " queries done";
        if (t.deadline) {
          const then = {skip: "it goes on without the rest", scripted:
            "a scripted teacher answers the rest", wait: "it keeps waiting"}[t.on_timeout];
          text += " \u00b7 " + clock(t.deadline - t.now) + " left, then " + then;
        }
        el.textContent = text;
      } else if (t.state === "training") {
        el.textContent = "Training: step " + t.step + " of " + t.total_steps +
          (t.next_round_step !== null ? "; next round at step " + t.next_round_step
                                      : "; all queries asked");
      } else if (t.state === "finished" || t.state === "stopped") {
        el.textContent = "Training " + t.state + " at step " + t.step + ".";
      } else {
        el.textContent = "No trainer is attached to this run.";
      }
      const quiet = t.updated_at ? t.now - t.updated_at : 0;
      if (quiet > 30 && (t.state === "waiting" || t.state === "training")) {
        el.textContent += " (no news from the trainer for " + clock(quiet) +
          ": is it still running?)";
      }
    } catch (e) { /* the next poll retries */ }
  }

  function showProgress(p) {
    if (!p) return;
    $("progress").textContent =
      "Round " + p.round + ": " + p.answered_in_round + " of " + p.round_size +
      " answered (you: " + p.mine_in_round + ") \u00b7 " + p.answered_total + " of " +
      p.total_queries + " queries answered overall (you: " + p.mine_total + ")" + budgetText;
  }

  async function loadNext() {
    clearTimeout(pollTimer);
    setBusy(true);
    try {
      const resp = await api("/api/next");
      if (resp.status === 401) {
        current = null;
        setStatus("This link is not valid: " + await errorText(resp));
        return;
      }
      if (resp.status === 204) {
        current = null;
        $("progress").textContent = "";  // a 204 has no progress: never show stale counts
        $("task").style.display = "none";
        $("waiting").style.display = "block";
        pollTimer = setTimeout(loadNext, 2000);
        return;
      }
      if (!resp.ok) throw new Error(await errorText(resp));
      const q = await resp.json();
      $("waiting").style.display = "none";
      $("task").style.display = "block";
      showProgress(q.progress);
      $("suggestion").textContent = q.suggestion ? "The scripted teacher answered \u201c" +
        q.suggestion + "\u201d: press the same key to confirm, another to override." : "";
      if (!current || current.query_id !== q.query_id) {
        if (q.kind === "text") showText(q); else await showClips(q);
      }
      current = q;
      setStatus("");
    } catch (e) {
      current = null;
      setStatus(String(e.message || e) + " (retrying)");
      pollTimer = setTimeout(loadNext, 2000);
    } finally {
      setBusy(false);
    }
  }

  async function loadRecent() {
    let data;
    try {
      const resp = await api("/api/recent");
      if (!resp.ok) return;
      data = await resp.json();
    } catch (e) {
      return;  // the list is only a convenience: keep the old one
    }
    const list = $("recent-list");
    list.innerHTML = "";
    data.answers.forEach((a, i) => {
      const li = document.createElement("li");
      li.textContent = "Query " + a.query_id + " (round " + a.round + "): " + a.label + " ";
      if (i === 0 && a.round === data.current_round) {
        const undo = document.createElement("button");
        undo.textContent = "Undo";
        undo.onclick = doUndo;
        li.appendChild(undo);
      }
      list.appendChild(li);
    });
  }

  async function submit(label) {
    if (busy || !current) return;
    setBusy(true);
    let problem = "";
    try {
      const resp = await api("/api/preferences", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({query_id: current.query_id, label: label}),
      });
      if (resp.status !== 201) problem = await errorText(resp);
    } catch (e) {
      problem = String(e.message || e);
    }
    current = null;
    await loadRecent();
    await loadNext();
    if (problem) setStatus(problem);  // after loadNext, which clears the status
  }

  async function doUndo() {
    if (busy) return;
    setBusy(true);
    let problem = "";
    try {
      const resp = await api("/api/undo", {method: "POST"});
      if (!resp.ok) problem = await errorText(resp);
    } catch (e) {
      problem = String(e.message || e);
    }
    current = null;
    await loadRecent();
    await loadNext();
    if (problem) setStatus(problem);
  }

  buttons.forEach((b) => b.addEventListener("click", () => submit(b.dataset.label)));
  document.addEventListener("keydown", (ev) => {
    const keys = {ArrowLeft: "left", ArrowRight: "right", "=": "equal", " ": "skip"};
    const label = keys[ev.key];
    // not Alt+Left (browser back) nor other shortcuts; a held key answers once, not every query
    if (!label || ev.altKey || ev.ctrlKey || ev.metaKey || ev.repeat) return;
    if (ev.target.tagName === "INPUT") return;
    ev.preventDefault();
    submit(label);
  });

  if (!token) {
    setStatus("No token: open the login link you were given (it ends in ?token=...).");
    $("task").style.display = "none";
    return;
  }
  api("/api/me").then(async (resp) => {
    if (resp.ok) $("who").textContent = (await resp.json()).name;
  });
  loadTraining();
  setInterval(loadTraining, 2000);
  loadRecent();
  loadNext();
})();
</script>
</body>
</html>
"""
