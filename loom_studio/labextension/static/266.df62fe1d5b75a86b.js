"use strict";(self.rspackChunk_loom_studio_jupyterlab=self.rspackChunk_loom_studio_jupyterlab||[]).push([[266],{475(e,o,t){var r=t(601),a=t.n(r),n=t(314),i=(t.n(n))()(a());i.push([e.id,`/* The Loom sidebar: Jupyter's own variables, so it follows the light and dark themes. */

.jp-LoomSidebar {
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size1);
  overflow-y: auto;
  padding: 0 8px 8px;
  min-width: 220px;
}

.jp-LoomSidebar-header {
  display: flex;
  align-items: center;
  justify-content: space-between;
  padding: 8px 0 4px;
}

.jp-LoomSidebar-title {
  font-size: var(--jp-ui-font-size2);
  font-weight: 600;
  margin: 0;
  text-transform: uppercase;
  letter-spacing: 0.05em;
}

.jp-LoomSidebar-open {
  background: var(--jp-brand-color1);
  border: none;
  border-radius: 2px;
  color: white;
  cursor: pointer;
  padding: 4px 10px;
}

.jp-LoomSidebar-open:hover {
  background: var(--jp-brand-color0);
}

.jp-LoomSidebar-status {
  white-space: pre-line;
  color: var(--jp-ui-font-color2);
  margin: 4px 0 8px;
  overflow-wrap: anywhere;
}

.jp-LoomSidebar-status[data-state='error'] {
  color: var(--jp-error-color1);
}

.jp-LoomSidebar-heading {
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  font-weight: 600;
  letter-spacing: 0.05em;
  margin: 10px 0 2px;
  padding-bottom: 2px;
  text-transform: uppercase;
}

.jp-LoomSidebar-empty {
  color: var(--jp-ui-font-color3);
  font-style: italic;
  margin: 4px 0;
}

.jp-LoomSidebar-section[data-empty='false'] .jp-LoomSidebar-empty {
  display: none;
}

.jp-LoomSidebar-list {
  list-style: none;
  margin: 0;
  padding: 0;
}

.jp-LoomSidebar-item {
  align-items: center;
  background: none;
  border: none;
  border-radius: 2px;
  color: inherit;
  cursor: pointer;
  display: flex;
  font: inherit;
  gap: 6px;
  padding: 4px 4px;
  text-align: left;
  width: 100%;
}

.jp-LoomSidebar-item:hover {
  background: var(--jp-layout-color2);
}

.jp-LoomSidebar-dot {
  border-radius: 50%;
  flex: none;
  height: 8px;
  width: 8px;
  background: var(--jp-warn-color1);
}

[data-section='agents'] [data-status='running'] .jp-LoomSidebar-dot {
  background: var(--jp-success-color1);
}

[data-section='agents'] [data-status='idle'] .jp-LoomSidebar-dot,
[data-section='agents'] [data-status='stopped'] .jp-LoomSidebar-dot {
  background: var(--jp-ui-font-color3);
}

[data-section='agents'] [data-status='failed'] .jp-LoomSidebar-dot,
[data-section='agents'] [data-status='silent'] .jp-LoomSidebar-dot {
  background: var(--jp-error-color1);
}

[data-section='topics'] .jp-LoomSidebar-dot {
  background: var(--jp-brand-color2);
  border-radius: 1px;
}

.jp-LoomSidebar-label {
  flex: 1 1 auto;
  font-family: var(--jp-code-font-family);
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.jp-LoomSidebar-detail {
  color: var(--jp-ui-font-color2);
  flex: none;
}

.jp-LoomSidebar-rate {
  color: var(--jp-ui-font-color2);
  flex: none;
  font-variant-numeric: tabular-nums;
  min-width: 4.5em;
  text-align: right;
}

.jp-LoomStudioTab iframe {
  border: none;
}
`,""]),t.d(o,{},{A:i})},646(e,o,t){var r=t(601),a=t.n(r),n=t(314),i=t.n(n),s=t(475),p=i()(a());p.i(s.A),p.push([e.id,`
`,""]),t.d(o,{},{A:p})},314(e){e.exports=function(e){var o=[];return o.toString=function(){return this.map(function(o){var t="",r=void 0!==o[5];return o[4]&&(t+="@supports (".concat(o[4],") {")),o[2]&&(t+="@media ".concat(o[2]," {")),r&&(t+="@layer".concat(o[5].length>0?" ".concat(o[5]):""," {")),t+=e(o),r&&(t+="}"),o[2]&&(t+="}"),o[4]&&(t+="}"),t}).join("")},o.i=function(e,t,r,a,n){"string"==typeof e&&(e=[[null,e,void 0]]);var i={};if(r)for(var s=0;s<this.length;s++){var p=this[s][0];null!=p&&(i[p]=!0)}for(var d=0;d<e.length;d++){var c=[].concat(e[d]);r&&i[c[0]]||(void 0!==n&&(void 0===c[5]||(c[1]="@layer".concat(c[5].length>0?" ".concat(c[5]):""," {").concat(c[1],"}")),c[5]=n),t&&(c[2]&&(c[1]="@media ".concat(c[2]," {").concat(c[1],"}")),c[2]=t),a&&(c[4]?(c[1]="@supports (".concat(c[4],") {").concat(c[1],"}"),c[4]=a):c[4]="".concat(a)),o.push(c))}},o}},601(e){e.exports=function(e){return e[1]}},665(e,o,t){t.r(o);var r=t(72),a=t.n(r),n=t(825),i=t.n(n),s=t(659),p=t.n(s),d=t(56),c=t.n(d),l=t(540),u=t.n(l),f=t(113),m=t.n(f),v=t(646),b={};b.styleTagTransform=m(),b.setAttributes=c(),b.insert=p().bind(null,"head"),b.domAPI=i(),b.insertStyleElement=u(),a()(v.A,b);let h=v.A&&v.A.locals?v.A.locals:void 0;t.d(o,{},{default:h})},72(e){var o=[];function t(e){for(var t=-1,r=0;r<o.length;r++)if(o[r].identifier===e){t=r;break}return t}function r(e,r){for(var a={},n=[],i=0;i<e.length;i++){var s=e[i],p=r.base?s[0]+r.base:s[0],d=a[p]||0,c="".concat(p," ").concat(d);a[p]=d+1;var l=t(c),u={css:s[1],media:s[2],sourceMap:s[3],supports:s[4],layer:s[5]};if(-1!==l)o[l].references++,o[l].updater(u);else{var f=function(e,o){var t=o.domAPI(o);return t.update(e),function(o){o?(o.css!==e.css||o.media!==e.media||o.sourceMap!==e.sourceMap||o.supports!==e.supports||o.layer!==e.layer)&&t.update(e=o):t.remove()}}(u,r);r.byIndex=i,o.splice(i,0,{identifier:c,updater:f,references:1})}n.push(c)}return n}e.exports=function(e,a){var n=r(e=e||[],a=a||{});return function(e){e=e||[];for(var i=0;i<n.length;i++){var s=t(n[i]);o[s].references--}for(var p=r(e,a),d=0;d<n.length;d++){var c=t(n[d]);0===o[c].references&&(o[c].updater(),o.splice(c,1))}n=p}}},659(e){var o={};e.exports=function(e,t){var r=function(e){if(void 0===o[e]){var t=document.querySelector(e);if(window.HTMLIFrameElement&&t instanceof window.HTMLIFrameElement)try{t=t.contentDocument.head}catch(e){t=null}o[e]=t}return o[e]}(e);if(!r)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");r.appendChild(t)}},540(e){e.exports=function(e){var o=document.createElement("style");return e.setAttributes(o,e.attributes),e.insert(o,e.options),o}},56(e,o,t){e.exports=function(e){var o=t.nc;o&&e.setAttribute("nonce",o)}},825(e){e.exports=function(e){if("u"<typeof document)return{update:function(){},remove:function(){}};var o=e.insertStyleElement(e);return{update:function(t){var r,a,n;r="",t.supports&&(r+="@supports (".concat(t.supports,") {")),t.media&&(r+="@media ".concat(t.media," {")),(a=void 0!==t.layer)&&(r+="@layer".concat(t.layer.length>0?" ".concat(t.layer):""," {")),r+=t.css,a&&(r+="}"),t.media&&(r+="}"),t.supports&&(r+="}"),(n=t.sourceMap)&&"u">typeof btoa&&(r+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(n))))," */")),e.styleTagTransform(r,o,e.options)},remove:function(){var e;null===(e=o).parentNode||e.parentNode.removeChild(e)}}}},113(e){e.exports=function(e,o){if(o.styleSheet)o.styleSheet.cssText=e;else{for(;o.firstChild;)o.removeChild(o.firstChild);o.appendChild(document.createTextNode(e))}}}}]);