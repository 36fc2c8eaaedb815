// The rater's trials, one page for the whole session.
// - The display is the experiment's: both images exactly `state.size` CSS pixels,
//   side by side. A window that cannot fit them (or, when the experiment asks for
//   it, a browser not in fullscreen) shows a prompt and no trial until it can.
// - Both images of a pair are decoded before either is shown; the next pair is
//   decoded in the background while the rater looks at the current one.
// - Response time runs from the frame both images became visible to the answer.
// - An exposure limit (fixed, or HYPE_time's staircase, set per trial by the server)
//   hides the pair; with the staircase a 3-2-1 countdown comes before the pair and
//   four noise masks of 30 ms after it. The rater still answers.
// - Each answer carries the trial's viewing conditions: the displayed size, whether
//   the page lost focus or was hidden while the trial was on screen, and whether the
//   browser stayed in fullscreen.
// - A click, or the arrow keys / F and J, answer; each trial is sent exactly once
//   (the server also ignores a repeated identical answer). Network errors retry.
// - Practice answers get feedback; scored and catch trials never do.
(function () {
  "use strict";
  const form = document.getElementById("pair");
  const stateNode = document.getElementById("vtt-state");
  if (!form || !stateNode) return;
  const state = JSON.parse(stateNode.textContent);
  const pair = form.querySelector(".pair");
  const images = Array.from(pair.querySelectorAll("img"));
  const masks = Array.from(pair.querySelectorAll("canvas.mask"));
  const countdown = pair.querySelector(".countdown");
  const buttons = Array.from(pair.querySelectorAll("button"));
  const feedback = document.getElementById("feedback");
  const fit = document.getElementById("fit");
  const fullscreenPrompt = document.getElementById("fullscreen");
  const csrf = form.elements.csrfmiddlewaretoken.value;
  const MASKS = 4, MASK_MS = 30, COUNT_MS = 500;
  let current = state.current;
  let shownAt = null;
  let busy = false;
  let showing = 0;          // increases with every show(): stale timers and promises do nothing
  let timers = [];
  let lookedAway = false;   // the page lost focus or visibility during this trial
  let stayedFullscreen = false;
  let leftFullscreen = null;  // token of a trial during which the browser left fullscreen
  let displayed = null;
  const decoded = new Map();  // url -> Promise of a decoded image

  function decode(url) {
    if (!decoded.has(url)) {
      const img = new Image();
      img.src = url;
      decoded.set(url, img.decode().catch(() => undefined));
    }
    return decoded.get(url);
  }

  function preload(trial) {
    if (trial) { decode(trial.left); decode(trial.right); }
  }

  function later(ms, fn) { timers.push(setTimeout(fn, ms)); }
  function clearTimers() { timers.forEach(clearTimeout); timers = []; }

  // What the window needs: two images and their 4 px frames, the gap, the page's padding.
  function needed() {
    const style = getComputedStyle(pair);
    const gap = parseFloat(style.columnGap) || 0;
    const body = getComputedStyle(document.body);
    const padX = parseFloat(body.paddingLeft) + parseFloat(body.paddingRight);
    const padY = parseFloat(body.paddingTop) + parseFloat(body.paddingBottom);
    return {width: Math.ceil(2 * (state.size + 8) + gap + padX), height: Math.ceil(state.size + 8 + padY)};
  }

  function fits() {
    const need = needed();
    const ok = window.innerWidth >= need.width && window.innerHeight >= need.height;
    if (!ok) {
      document.getElementById("need-width").textContent = need.width;
      document.getElementById("need-height").textContent = need.height;
      document.getElementById("have").textContent = window.innerWidth + " x " + window.innerHeight;
    }
    return ok;
  }

  function isFullscreen() { return Boolean(document.fullscreenElement); }

  // Show the current trial if the display allows it, or the prompt that says what is missing.
  function present() {
    const sized = fits();
    const full = !state.fullscreen || isFullscreen();
    fit.hidden = sized;
    fullscreenPrompt.hidden = !sized || full;
    const ready = sized && full;
    form.hidden = !ready;
    if (ready && current && !busy) show(current);
  }

  function blocked() { return !fit.hidden || !fullscreenPrompt.hidden; }

  function show(trial) {
    current = trial;
    shownAt = null;
    clearTimers();
    const id = ++showing;
    delete form.dataset.ready;
    delete form.dataset.exposed;
    buttons.forEach((b) => (b.disabled = true));
    pair.classList.remove("moved");  // no hover frame until the mouse moves over the new pair
    pair.classList.add("loading");
    pair.classList.remove("hidden");
    masks.forEach((m) => (m.hidden = true));
    document.getElementById("phase").textContent = trial.practice ? "Practice " : "";
    document.getElementById("number").textContent = trial.number;
    document.getElementById("total").textContent = trial.total;
    document.title = (trial.practice ? "Practice " : "") + trial.number + " of " + trial.total;
    form.elements.trial.value = trial.token;
    if (blocked()) return;  // present() shows it once the display allows
    Promise.all([decode(trial.left), decode(trial.right)]).then(function () {
      if (id !== showing) return undefined;
      images[0].src = trial.left;
      images[1].src = trial.right;
      return Promise.all(images.map((img) => img.decode().catch(() => undefined)));
    }).then(function () {
      if (id !== showing) return;
      if (state.masks && trial.exposure_ms > 0) countThenReveal(id, trial); else reveal(id, trial);
    });
  }

  function countThenReveal(id, trial) {
    countdown.hidden = false;
    [3, 2, 1].forEach(function (n, i) {
      later(i * COUNT_MS, function () { countdown.textContent = n; });
    });
    later(3 * COUNT_MS, function () { countdown.hidden = true; reveal(id, trial); });
  }

  function reveal(id, trial) {
    if (id !== showing) return;
    pair.classList.remove("loading");
    requestAnimationFrame(function () {
      if (id !== showing) return;
      shownAt = performance.now();
      lookedAway = document.visibilityState === "hidden";
      stayedFullscreen = isFullscreen();
      displayed = images[0].getBoundingClientRect().width;
      buttons.forEach((b) => (b.disabled = false));
      busy = false;
      form.dataset.ready = "1";  // answers count from here
      if (trial.exposure_ms > 0) later(trial.exposure_ms, function () { hide(id); });
    });
  }

  function noise(canvas) {
    const ctx = canvas.getContext("2d");
    const data = ctx.createImageData(canvas.width, canvas.height);
    for (let i = 0; i < data.data.length; i += 4) {
      data.data[i] = Math.random() * 256;
      data.data[i + 1] = Math.random() * 256;
      data.data[i + 2] = Math.random() * 256;
      data.data[i + 3] = 255;
    }
    ctx.putImageData(data, 0, 0);
  }

  // End of the exposure: with the staircase, four fresh noise masks of 30 ms, then nothing.
  function hide(id) {
    pair.classList.add("hidden");
    form.dataset.exposed = "1";
    if (!state.masks) return;
    for (let k = 0; k < MASKS; k++) {
      later(k * MASK_MS, function () {
        if (id !== showing) return;
        masks.forEach(function (m) { noise(m); m.hidden = false; });
      });
    }
    later(MASKS * MASK_MS, function () { masks.forEach((m) => (m.hidden = true)); });
  }

  function post(body, attempt) {
    return fetch(state.answer_url, {
      method: "POST",
      headers: {"Accept": "application/json", "X-CSRFToken": csrf},
      body: body,
      credentials: "same-origin",
    }).then(function (response) {
      if (response.status >= 500 && attempt < 4) throw new Error("server error");
      return response.json().then((data) => ({ok: response.ok, data: data}));
    }).catch(function (error) {
      if (attempt >= 4) throw error;
      return new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt)).then(() => post(body, attempt + 1));
    });
  }

  function answer(choice) {
    if (busy || shownAt === null || blocked()) return;
    busy = true;
    delete form.dataset.ready;
    if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
    clearTimers();
    showing++;
    masks.forEach((m) => (m.hidden = true));
    buttons.forEach((b) => (b.disabled = true));
    const body = new FormData();
    body.append("trial", current.token);
    body.append("choice", choice);
    body.append("response_ms", Math.round(performance.now() - shownAt));
    body.append("display_px", displayed === null ? "" : Math.round(displayed));
    body.append("focus_lost", lookedAway ? "1" : "0");
    body.append("fullscreen", stayedFullscreen && isFullscreen() && leftFullscreen !== current.token ? "1" : "0");
    const wasPractice = current.practice;
    post(body, 0).then(function (result) {
      if (!result.ok) {
        feedback.hidden = false;
        feedback.textContent = result.data.error || "Your answer could not be recorded.";
        return;
      }
      const data = result.data;
      preload(data.next);
      const go = function () {
        if (!data.current) { window.location.assign(data.done_url); return; }
        busy = false;
        current = data.current;
        if (blocked()) present(); else show(data.current);
      };
      if (wasPractice && data.feedback) {
        feedback.hidden = false;
        feedback.className = "feedback " + (data.feedback.correct ? "correct" : "wrong");
        feedback.textContent = data.feedback.correct
          ? "Correct."
          : "Not this time: the true colors were on the " + (data.feedback.real_side === "L" ? "left." : "right.");
        setTimeout(function () { feedback.hidden = true; go(); }, 1500);
      } else {
        go();
      }
    }, function () {
      feedback.hidden = false;
      feedback.textContent = "The connection failed. Please reload the page to continue where you were.";
    });
  }

  function away() { if (shownAt !== null) lookedAway = true; }
  window.addEventListener("blur", away);
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") away(); });
  document.addEventListener("fullscreenchange", function () {
    if (!isFullscreen()) {
      stayedFullscreen = false;
      if (current && (shownAt !== null || form.dataset.exposed)) leftFullscreen = current.token;
    }
    if (state.fullscreen) { showing++; clearTimers(); shownAt = null; present(); }
  });
  let resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      const wasBlocked = blocked();
      if (!fits()) { showing++; clearTimers(); shownAt = null; present(); } else if (wasBlocked) present();
    }, 100);
  });
  document.getElementById("enter-fullscreen").addEventListener("click", function () {
    const request = document.documentElement.requestFullscreen && document.documentElement.requestFullscreen();
    if (request && request.catch) request.catch(function () {});
  });

  pair.addEventListener("pointermove", function (event) {
    if (event.pointerType === "mouse") pair.classList.add("moved");
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (event.submitter && event.submitter.value) answer(event.submitter.value);
  });
  document.addEventListener("keydown", function (event) {
    if (event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
    const key = event.key.toLowerCase();
    if (key === "arrowleft" || key === "f") answer("L");
    else if (key === "arrowright" || key === "j") answer("R");
  });

  buttons.forEach((b) => (b.disabled = true));
  present();
  preload(state.next);
})();
