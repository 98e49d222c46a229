document.addEventListener("DOMContentLoaded", function () {
  document.title = document.title + " (js loaded)";
});
