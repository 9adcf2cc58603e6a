/* Remembers the API token for this browser tab (sessionStorage), so triage forms need it once.
   The token is only ever sent in the form posted to this same server. */
"use strict";
(function () {
  var KEY = "malhug-api-token";
  var fields = document.querySelectorAll("input[data-remember-token]");
  for (var i = 0; i < fields.length; i++) {
    var field = fields[i];
    var saved = window.sessionStorage.getItem(KEY);
    if (saved && !field.value) { field.value = saved; }
    field.form.addEventListener("submit", function (event) {
      var input = event.target.querySelector("input[data-remember-token]");
      if (input && input.value) { window.sessionStorage.setItem(KEY, input.value); }
    });
  }
})();
