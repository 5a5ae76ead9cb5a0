// 核销: optional QR scanning with the phone camera (typing the code always works).
// Shown only where the browser has BarcodeDetector with QR support and a camera API.
(function () {
  "use strict";

  function start() {
    var button = document.getElementById("scan-button");
    var panel = document.getElementById("scanner");
    var video = document.getElementById("scanner-video");
    var status = document.getElementById("scanner-status");
    var stopButton = document.getElementById("scan-stop");
    var input = document.getElementById("f-code");
    var form = document.getElementById("redeem-lookup");
    if (!button || !panel || !video || !input || !form) return;
    if (!("BarcodeDetector" in window) || !navigator.mediaDevices ||
        !navigator.mediaDevices.getUserMedia) return;

    var stream = null;
    var timer = null;
    var detector = null;

    function stop() {
      if (timer) { window.clearTimeout(timer); timer = null; }
      if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
      video.srcObject = null;
      panel.hidden = true;
    }

    function found(raw) {
      // A voucher QR holds the code's digits; keep only digits.
      var digits = String(raw || "").replace(/\D/g, "");
      if (digits.length < 12) return false;
      input.value = digits;
      stop();
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
      return true;
    }

    function scan() {
      if (!stream) return;
      detector.detect(video).then(function (codes) {
        for (var i = 0; i < codes.length; i++) {
          if (found(codes[i].rawValue)) return;
        }
        timer = window.setTimeout(scan, 300);
      }).catch(function () {
        timer = window.setTimeout(scan, 500);
      });
    }

    window.BarcodeDetector.getSupportedFormats().then(function (formats) {
      if (formats.indexOf("qr_code") < 0) return;
      detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      button.hidden = false;
    }).catch(function () { /* no scanning: typing works */ });

    button.addEventListener("click", function () {
      if (!detector) return;
      panel.hidden = false;
      if (status) status.textContent = "正在打开摄像头…";
      navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false })
        .then(function (s) {
          stream = s;
          video.srcObject = s;
          return video.play();
        })
        .then(function () {
          if (status) status.textContent = "将二维码对准取景框";
          scan();
        })
        .catch(function () {
          stop();
          panel.hidden = false;  // keep the message visible
          if (status) status.textContent = "无法使用摄像头，请手动输入券码";
          input.focus();
        });
    });
    if (stopButton) stopButton.addEventListener("click", stop);
    // htmx swaps only the result; the form (and a running camera) stays. Stop it on leaving.
    window.addEventListener("pagehide", stop);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
