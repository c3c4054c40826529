import { LabIcon } from '@jupyterlab/ui-components';

/**
 * A woven square, warp and weft in a basket weave: each thread passes over one
 * crossing and under the next. `jp-icon3` follows the theme's icon colour.
 */
const LOOM_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 2h3v2H4zM4 9h3v6H4zM4 20h3v2H4z"/>
    <path d="M10.5 2h3v7.5h-3zM10.5 14.5h3V22h-3z"/>
    <path d="M17 2h3v2h-3zM17 9h3v6h-3zM17 20h3v2h-3z"/>
    <path d="M2 5h7.5v3H2zM14.5 5H22v3h-7.5z"/>
    <path d="M8 10.5h8v3H8z"/>
    <path d="M2 16h7.5v3H2zM14.5 16H22v3h-7.5z"/>
  </g>
</svg>`;

export const loomIcon = new LabIcon({ name: 'loom-studio:loom', svgstr: LOOM_SVG });
