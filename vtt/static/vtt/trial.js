// One trial: show both images only once both are decoded, time the answer from that
// moment, accept a click or the arrow keys (also F / J), and submit exactly once.
(function () {
  "use strict";
  const form = document.getElementById("pair");
  if (!form) return;
  const pair = form.querySelector(".pair");
  const images = Array.from(pair.querySelectorAll("img"));
  const exposure = parseInt(form.dataset.exposureMs || "0", 10);
  let shownAt = null;
  let sent = false;

  function submit(choice) {
    if (sent || shownAt === null) return;
    sent = true;
    form.elements.response_ms.value = Math.round(performance.now() - shownAt);
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = "choice";
    field.value = choice;
    form.appendChild(field);
    form.querySelectorAll("button").forEach((b) => (b.disabled = true));
    form.submit();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const button = event.submitter;
    if (button && button.value) submit(button.value);
  });
  document.addEventListener("keydown", function (event) {
    const key = event.key.toLowerCase();
    if (key === "arrowleft" || key === "f") submit("L");
    else if (key === "arrowright" || key === "j") submit("R");
  });

  Promise.all(images.map((img) => img.decode())).then(function () {
    pair.classList.remove("loading");
    requestAnimationFrame(function () {
      shownAt = performance.now();
      if (exposure > 0) setTimeout(() => pair.classList.add("hidden"), exposure);
    });
  }, function () {
    pair.classList.remove("loading");
    shownAt = performance.now();
  });
})();
