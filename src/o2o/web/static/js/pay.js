// 收银台: inside WeChat call WeixinJSBridge getBrandWCPayRequest with the server's parameters,
// then poll /pay/{no}/status until the *server* says the payment succeeded (only then 支付成功).
(function () {
  "use strict";

  var card = document.querySelector("[data-testid=cashier]");
  if (!card) return;
  var paymentNo = card.getAttribute("data-payment");
  var state = card.querySelector("[data-pay-state]");
  var polls = 0;

  function say(text) {
    state.textContent = text;
  }

  function poll(ask) {
    polls += 1;
    fetch("/pay/" + encodeURIComponent(paymentNo) + "/status" + (ask ? "?ask=1" : ""), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.paid) {
          say("支付成功");
          card.setAttribute("data-paid", "true");
          setTimeout(function () { window.location.assign(s.next); }, 800);
        } else if (polls < 90) {
          setTimeout(function () { poll(ask); }, polls < 10 ? 1000 : 3000);
        } else {
          say("暂未确认到支付结果，请稍后在订单中查看");
        }
      })
      .catch(function () {
        if (polls < 90) setTimeout(function () { poll(ask); }, 3000);
      });
  }

  function invoke() {
    var params = JSON.parse(card.getAttribute("data-jsapi"));
    window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function (res) {
      var msg = (res && res.err_msg) || "";
      if (msg === "get_brand_wcpay_request:ok") {
        say("正在确认支付结果…");
        poll(true);
      } else if (msg === "get_brand_wcpay_request:cancel") {
        say("已取消支付");
      } else {
        say("支付失败，请重试");
      }
    });
  }

  if (card.getAttribute("data-paid") === "true") return;
  var go = card.getAttribute("data-go");
  if (go) {
    // WeChat's H5 cashier or authorization: a navigation of ours, not a form's redirect.
    window.location.assign(go);
    return;
  }
  var way = card.getAttribute("data-way");
  if (way === "jsapi") {
    if (window.WeixinJSBridge) {
      invoke();
    } else {
      document.addEventListener("WeixinJSBridgeReady", invoke, false);
    }
  } else if (card.getAttribute("data-poll") === "true") {
    // Native QR or back from H5: the payment is made elsewhere; wait for the server.
    poll(!way);
  }
})();
