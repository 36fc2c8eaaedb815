// The landing page's forms carry what the browser can say of the rater's display:
// screen and window size (CSS pixels), devicePixelRatio, the widest colour gamut the
// `color-gamut` media query matches, the primary pointer and the touch points. The
// server keeps known keys with sane values only (vtt.services.clean_viewing).
(function () {
  "use strict";
  function matches(query) { return window.matchMedia && window.matchMedia(query).matches; }
  function viewing() {
    const gamut = ["rec2020", "p3", "srgb"].find((g) => matches("(color-gamut: " + g + ")")) || null;
    const pointer = ["fine", "coarse", "none"].find((p) => matches("(pointer: " + p + ")")) || null;
    return JSON.stringify({
      screen_width: screen.width, screen_height: screen.height,
      window_width: window.innerWidth, window_height: window.innerHeight,
      device_pixel_ratio: window.devicePixelRatio, color_gamut: gamut, pointer: pointer,
      touch_points: navigator.maxTouchPoints || 0,
    });
  }
  document.querySelectorAll("form.viewing").forEach(function (form) {
    form.addEventListener("submit", function () { form.elements.viewing.value = viewing(); });
  });
})();
