// Small page behaviours; no inline scripts (the Content-Security-Policy forbids them).
(function () {
  "use strict";

  // <form data-confirm="确定要…？">: ask before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // "使用我的位置": fill the hidden lat/lng of the location form and send it.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-geolocate]");
    if (!button) return;
    event.preventDefault();
    var form = document.getElementById(button.getAttribute("data-geolocate"));
    if (!form || !navigator.geolocation) {
      showToast("当前浏览器无法获取位置，请选择区域");
      return;
    }
    button.disabled = true;
    navigator.geolocation.getCurrentPosition(
      function (pos) {
        form.querySelector("[name=lat]").value = pos.coords.latitude.toFixed(6);
        form.querySelector("[name=lng]").value = pos.coords.longitude.toFixed(6);
        form.submit();
      },
      function () {
        button.disabled = false;
        showToast("未能获取位置，请选择区域");
      },
      { timeout: 8000, maximumAge: 600000 }
    );
  });

  function showToast(message) {
    var toast = document.getElementById("toast");
    if (!toast) return;
    toast.innerHTML = "";
    var box = document.createElement("div");
    box.className = "flash flash-error";
    box.setAttribute("role", "alert");
    box.textContent = message;
    toast.appendChild(box);
    window.setTimeout(function () { toast.innerHTML = ""; }, 5000);
  }

  // htmx: an error response (403, 409, 500…) is not swapped; show its message instead.
  document.addEventListener("htmx:responseError", function (event) {
    var text = "操作失败，请刷新页面后重试";
    var xhr = event.detail && event.detail.xhr;
    if (xhr && xhr.responseText) {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var detail = doc.querySelector("[data-error-detail]");
      if (detail) text = detail.textContent.trim();
    }
    showToast(text);
  });
  document.addEventListener("htmx:sendError", function () {
    showToast("网络连接失败，请稍后重试");
  });
})();
