// The rater's trials, one page for the whole session.
// - Both images of a pair are decoded before either is shown; the next pair is
//   decoded in the background while the rater looks at the current one.
// - Response time runs from the frame both images became visible to the answer.
// - An optional exposure limit hides the pair; the rater still answers.
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
  const buttons = Array.from(pair.querySelectorAll("button"));
  const feedback = document.getElementById("feedback");
  const csrf = form.elements.csrfmiddlewaretoken.value;
  let current = state.current;
  let shownAt = null;
  let busy = false;
  let exposureTimer = null;
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

  function show(trial) {
    current = trial;
    shownAt = null;
    delete form.dataset.ready;
    pair.classList.remove("moved");  // no hover frame until the mouse moves over the new pair
    pair.classList.add("loading");
    pair.classList.remove("hidden");
    document.getElementById("phase").textContent = trial.practice ? "Practice " : "";
    document.getElementById("number").textContent = trial.number;
    document.getElementById("total").textContent = trial.total;
    document.title = (trial.practice ? "Practice " : "") + trial.number + " of " + trial.total;
    form.elements.trial.value = trial.token;
    Promise.all([decode(trial.left), decode(trial.right)]).then(function () {
      images[0].src = trial.left;
      images[1].src = trial.right;
      return Promise.all(images.map((img) => img.decode().catch(() => undefined)));
    }).then(function () {
      pair.classList.remove("loading");
      requestAnimationFrame(function () {
        shownAt = performance.now();
        buttons.forEach((b) => (b.disabled = false));
        busy = false;
        form.dataset.ready = "1";  // answers count from here
        if (state.exposure_ms > 0) {
          clearTimeout(exposureTimer);
          exposureTimer = setTimeout(() => pair.classList.add("hidden"), state.exposure_ms);
        }
      });
    });
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
    if (busy || shownAt === null) return;
    busy = true;
    delete form.dataset.ready;
    if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
    clearTimeout(exposureTimer);
    buttons.forEach((b) => (b.disabled = true));
    const body = new FormData();
    body.append("trial", current.token);
    body.append("choice", choice);
    body.append("response_ms", Math.round(performance.now() - shownAt));
    const wasPractice = current.practice;
    post(body, 0).then(function (result) {
      if (!result.ok) {
        feedback.hidden = false;
        feedback.textContent = result.data.error || "Your answer could not be recorded.";
        return;
      }
      const data = result.data;
      preload(data.next);
      const go = () => (data.current ? show(data.current) : window.location.assign(data.done_url));
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
  show(current);
  preload(state.next);
})();
